import type { UsageRecord } from "../../gen/billing/v1/usage_pb.js";
import { ConflictWarning } from "./conflict-warning.js";
import type { Delivery, Handling, HandlingContext } from "./delivery.js";
import type { RejectedRecord, UsageStore, UsageWriteResult } from "./usage-store.js";
import { WorkSlots } from "./work-slots.js";

/** A part of one message: its records `from`..`to` (and its rejections, with the first part). */
interface Slice {
  d: Delivery;
  records: readonly UsageRecord[];
  digests: readonly string[];
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
  const conflictWarning = new ConflictWarning(log, "kept as rejected by the store");
  const slots = new WorkSlots<Slice[]>({
    slots: o.concurrency,
    timeoutMs: o.handlerTimeoutMs,
    retryBaseMs: o.connection.reconnectBaseMs,
    retryMaxMs: o.connection.reconnectMaxMs,
    next: () => nextBatch(queue, o.maxBatchRecords),
    run: async (batch) => {
      const { records, digests, rejected, skipped } = unseen(batch, window);
      let w: Written = { inserted: 0, refused: 0, conflicts: new Set(), rejectedStored: 0 };
      let durationMs = -1;
      if (records.length > 0 || rejected.length > 0) {
        const start = performance.now();
        const result = await store.write({ records, rejected });
        durationMs = performance.now() - start;
        w = written(result, records.length, rejected.length);
      }
      // Done: counted and acknowledged once, by the first write of this batch that succeeded.
      return () => {
        for (const [i, r] of records.entries()) {
          if (!w.conflicts.has(i)) window.add(r.id, digests[i] as string);
        }
        const conflicts = w.conflicts.size;
        counters.handled += w.inserted;
        counters.idConflicts += conflicts;
        const [one] = w.conflicts;
        if (one !== undefined) conflictWarning.add(conflicts, (records[one] as UsageRecord).id);
        counters.duplicates += skipped + records.length - w.inserted - w.refused - conflicts;
        counters.rejectedDeliveries += rejected.length + w.refused;
        counters.rejectedStored += w.rejectedStored;
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
        const one = d.left === 1;
        queue.push({
          d,
          records: one ? d.records : d.records.slice(i * max, (i + 1) * max),
          digests: one ? d.digests : d.digests.slice(i * max, (i + 1) * max),
          rejected: i === 0 ? d.rejected : [],
        });
      }
      slots.pump();
    },
    idle: () => slots.idle(),
    stop: () => {
      slots.stop();
      conflictWarning.stop();
    },
  };
}

/**
 * The next write: slices from the front of `queue` up to `max` records. Rejections count too:
 * messages that hold nothing billable cannot make a write unbounded.
 */
function nextBatch(queue: Slice[], max: number): Slice[] | undefined {
  if (queue.length === 0) return undefined;
  const weight = (s: Slice | undefined) => (s?.records.length ?? 0) + (s?.rejected.length ?? 0);
  const batch = [queue.shift() as Slice];
  let size = weight(batch[0]);
  while (queue.length > 0 && size + weight(queue[0]) <= max) {
    const s = queue.shift() as Slice;
    size += weight(s);
    batch.push(s);
  }
  return batch;
}

/**
 * What a batch gives the store. Skipped: a record whose bytes were handled recently under its id,
 * or came before in this batch. One with other bytes under a known id goes to the store, which
 * compares the content. Filtered at each attempt: the window only holds what was durably handled.
 */
function unseen(batch: readonly Slice[], window: HandlingContext["window"]) {
  const seen = new Map<string, string>();
  const records: UsageRecord[] = [];
  const digests: string[] = [];
  const rejected: RejectedRecord[] = [];
  let skipped = 0;
  for (const s of batch) {
    for (const [i, r] of s.records.entries()) {
      const digest = s.digests[i] as string;
      const before = seen.get(r.id) ?? window.digest(r.id);
      if (before === digest) skipped++;
      else {
        if (!seen.has(r.id)) seen.set(r.id, digest);
        records.push(r);
        digests.push(digest);
      }
    }
    rejected.push(...s.rejected);
  }
  return { records, digests, rejected, skipped };
}

/** What a store's write did, its figures checked against the batch. */
interface Written {
  inserted: number;
  /** Records the store refused (kept as rejected). */
  refused: number;
  /** Indexes of records whose id was stored with other content. */
  conflicts: Set<number>;
  rejectedStored: number;
}

/**
 * A store's `UsageWriteResult`, within bounds: inserted, refused and conflicts together at most
 * the records; a store that reports nothing inserted every record.
 */
function written(result: UsageWriteResult | undefined, records: number, rejected: number): Written {
  const inserted = reported(result?.inserted, records, records);
  const refused = reported(result?.rejected, records - inserted, 0);
  const conflicts = new Set<number>();
  for (const i of Array.isArray(result?.conflicts) ? result.conflicts : []) {
    if (conflicts.size >= records - inserted - refused) break;
    if (Number.isSafeInteger(i) && i >= 0 && i < records) conflicts.add(i);
  }
  const all = rejected + refused + conflicts.size;
  return {
    inserted,
    refused,
    conflicts,
    rejectedStored: reported(result?.rejectedStored, all, all),
  };
}

/** A count a store reported, within 0..max; `otherwise` when it reported none (or nonsense). */
function reported(value: unknown, max: number, otherwise: number): number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0
    ? Math.min(value, max)
    : otherwise;
}
