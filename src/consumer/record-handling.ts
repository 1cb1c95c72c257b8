import type { UsageRecord } from "../../gen/billing/v1/usage_pb.js";
import type { Delivery, Handling, HandlingContext } from "./delivery.js";
import { idConflict } from "./id-conflict.js";
import type { RejectedRecord } from "./usage-store.js";
import { WorkSlots } from "./work-slots.js";

type Item =
  | { d: Delivery; record: UsageRecord; digest: string }
  | { d: Delivery; rejected: RejectedRecord };

/**
 * Deliveries to `onRecord` (and `onRejected`), one call per record, `concurrency` calls at a
 * time. A call that throws, rejects or times out is made again later (only that record: the
 * others of its message that were handled are in the dedupe window); its message stays
 * unacknowledged until every record of it was handled. A call that never settles holds one slot
 * for `handlerTimeoutMs` at a time, the others go on.
 */
export function recordHandling(
  ctx: HandlingContext,
  onRecord: (record: UsageRecord) => void | Promise<void>,
): Handling {
  const { o, window, counters, log } = ctx;
  const onRejected =
    o.onRejected ??
    ((r: RejectedRecord) =>
      log("warn", `rejected a record that cannot be billed: ${r.reason}`, {
        recordId: r.recordId,
        producer: r.producer,
        bytes: r.payload.length,
      }));
  // A FIFO read from `head`: shift() would make a long queue (many records per message) quadratic.
  let queue: Array<Item | undefined> = [];
  let head = 0;
  const take = (): Item | undefined => {
    if (head === queue.length) return undefined;
    const item = queue[head];
    queue[head++] = undefined;
    if (head === queue.length || head > 4096) {
      queue = queue.slice(head);
      head = 0;
    }
    return item;
  };
  const finish = (d: Delivery) => {
    if (--d.left === 0) ctx.done(d);
  };
  const slots = new WorkSlots<Item>({
    slots: o.concurrency,
    timeoutMs: o.handlerTimeoutMs,
    retryBaseMs: o.connection.reconnectBaseMs,
    retryMaxMs: o.connection.reconnectMaxMs,
    next: take,
    // Done (counted, its message's part finished) once, by the first call that succeeded.
    run: async (item) => {
      if ("record" in item) {
        const { record, digest } = item;
        const before = window.digest(record.id);
        if (before === digest) {
          return () => {
            counters.duplicates++;
            finish(item.d);
          };
        }
        if (before !== undefined) {
          // Its id was handled with other bytes: not billed again, passed on as rejected.
          await onRejected(idConflict(record, "handled before with other content"));
          return () => {
            counters.idConflicts++;
            finish(item.d);
          };
        }
        const start = performance.now();
        await onRecord(record);
        const durationMs = performance.now() - start;
        return () => {
          const first = window.digest(record.id); // another call of this id may have finished
          if (first === undefined) {
            window.add(record.id, digest);
            counters.handled++;
            ctx.batches.wrote([record], 0, durationMs);
          } else if (first === digest) counters.duplicates++;
          else counters.idConflicts++;
          finish(item.d);
        };
      }
      await onRejected(item.rejected);
      return () => {
        counters.rejectedDeliveries++;
        finish(item.d);
      };
    },
    failed: (item, err, attempt, delayMs) => {
      counters.failed++;
      const what =
        "record" in item ? `onRecord for record ${item.record.id}` : "onRejected for a rejection";
      log(
        "error",
        `${what} failed (attempt ${attempt}): ${
          err instanceof Error ? err.message : String(err)
        }; trying again in ${Math.round(delayMs)} ms (its message stays unacknowledged)`,
      );
    },
    describe: (item) => ("record" in item ? `onRecord(${item.record.id})` : "onRejected"),
  });
  return {
    add: (d) => {
      d.left = d.records.length + d.rejected.length;
      if (d.left === 0) {
        ctx.done(d);
        return;
      }
      for (const [i, record] of d.records.entries()) {
        queue.push({ d, record, digest: d.digests[i] as string });
      }
      for (const rejected of d.rejected) queue.push({ d, rejected });
      slots.pump();
    },
    idle: () => slots.idle(),
    stop: () => slots.stop(),
  };
}
