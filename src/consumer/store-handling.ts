import type { UsageRecord } from "../../gen/billing/v1/usage_pb.js";
import type { Delivery, Handling, HandlingContext } from "./delivery.js";
import type { RejectedRecord, UsageStore } from "./usage-store.js";
import { WorkSlots } from "./work-slots.js";

/** A part of one message: its records `from`..`to` (and its rejections, with the first part). */
interface Slice {
  d: Delivery;
  records: readonly UsageRecord[];
  rejected: readonly RejectedRecord[];
}

/**
 * Deliveries to a `UsageStore`: messages are grouped into one `write` of up to `maxBatchRecords`
 * records, `concurrency` writes at a time. Messages that arrive while a write runs make up the
 * next one (group commit); a message with more records than that is cut into several writes and
 * is done after the last. A write that fails or times out is made again with the same records,
 * whose messages stay unacknowledged until it succeeds.
 */
export function storeHandling(ctx: HandlingContext, store: UsageStore): Handling {
  const { o, window, counters, log } = ctx;
  const queue: Slice[] = [];
  const slots = new WorkSlots<Slice[]>({
    slots: o.concurrency,
    timeoutMs: o.handlerTimeoutMs,
    retryBaseMs: o.connection.reconnectBaseMs,
    retryMaxMs: o.connection.reconnectMaxMs,
    next: () => {
      if (queue.length === 0) return undefined;
      // Rejections count too: messages that hold nothing billable cannot make a write unbounded.
      const weight = (s: Slice | undefined) => (s?.records.length ?? 0) + (s?.rejected.length ?? 0);
      const batch = [queue.shift() as Slice];
      let size = weight(batch[0]);
      while (queue.length > 0 && size + weight(queue[0]) <= o.maxBatchRecords) {
        const s = queue.shift() as Slice;
        size += weight(s);
        batch.push(s);
      }
      return batch;
    },
    run: async (batch) => {
      // Skipped: ids handled recently, or twice in this batch. Filtered at each attempt: the
      // window only ever holds ids that were durably handled.
      const ids = new Set<string>();
      const records: UsageRecord[] = [];
      const rejected: RejectedRecord[] = [];
      let skipped = 0;
      for (const s of batch) {
        for (const r of s.records) {
          if (ids.has(r.id) || window.has(r.id)) skipped++;
          else {
            ids.add(r.id);
            records.push(r);
          }
        }
        rejected.push(...s.rejected);
      }
      let inserted = 0;
      let refused = 0;
      let durationMs = -1;
      if (records.length > 0 || rejected.length > 0) {
        const start = performance.now();
        const result = await store.write({ records, rejected });
        durationMs = performance.now() - start;
        inserted = reported(result?.inserted, records.length, records.length);
        refused = reported(result?.rejected, records.length - inserted, 0);
      }
      // Done: counted and acknowledged once, by the first write of this batch that succeeded.
      return () => {
        for (const id of ids) window.add(id);
        counters.handled += inserted;
        counters.duplicates += skipped + records.length - inserted - refused;
        counters.rejected += rejected.length + refused;
        if (durationMs >= 0) ctx.batches.wrote(records, rejected.length, durationMs);
        for (const s of batch) {
          if (--s.d.left === 0) ctx.done(s.d);
        }
      };
    },
    failed: (batch, err, attempt, delayMs) => {
      counters.failed++;
      log(
        "warn",
        `store write of ${batch.length} message(s) failed (attempt ${attempt}): ${
          err instanceof Error ? err.message : String(err)
        }; trying again in ${Math.round(delayMs)} ms (the messages stay unacknowledged)`,
      );
    },
    describe: (batch) => `store write of ${batch.length} message(s)`,
  });
  return {
    add: (d) => {
      const max = o.maxBatchRecords;
      d.left = Math.max(1, Math.ceil(d.records.length / max));
      for (let i = 0; i < d.left; i++) {
        queue.push({
          d,
          records: d.left === 1 ? d.records : d.records.slice(i * max, (i + 1) * max),
          rejected: i === 0 ? d.rejected : [],
        });
      }
      slots.pump();
    },
    idle: () => slots.idle(),
    stop: () => slots.stop(),
  };
}

/** A count a store reported, within 0..max; `otherwise` when it reported none (or nonsense). */
function reported(value: unknown, max: number, otherwise: number): number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0
    ? Math.min(value, max)
    : otherwise;
}
