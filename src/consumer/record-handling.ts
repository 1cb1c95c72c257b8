import type { UsageRecord } from "../../gen/billing/v1/usage_pb.js";
import { ConflictWarning } from "./conflict-warning.js";
import type { Delivery, Handling, HandlingContext } from "./delivery.js";
import { type IdClaim, IdClaims } from "./id-claims.js";
import { idConflict } from "./id-conflict.js";
import type { RejectedRecord } from "./usage-store.js";
import { WorkSlots } from "./work-slots.js";

type RecordItem = { d: Delivery; record: UsageRecord; digest: string };
type Item = RecordItem | { d: Delivery; rejected: RejectedRecord };

/**
 * Deliveries to `onRecord` (and `onRejected`), one call per record, `concurrency` calls at a
 * time. A call that throws, rejects or times out is made again later (only that record: the
 * others of its message that were handled are in the dedupe window); its message stays
 * unacknowledged until every record of it was handled. A call that never settles holds one slot
 * for `handlerTimeoutMs` at a time, the others go on. Records of one id never reach `onRecord`
 * at the same time: a record claims its id first (`IdClaims`).
 */
export function recordHandling(
  ctx: HandlingContext,
  onRecord: (record: UsageRecord) => void | Promise<void>,
): Handling {
  return new RecordHandling(ctx, onRecord);
}

class RecordHandling implements Handling {
  // A FIFO read from `head`: shift() would make a long queue (many records per message) quadratic.
  private queue: Array<Item | undefined> = [];
  private head = 0;
  private readonly claims = new IdClaims<RecordItem>();
  private readonly slots: WorkSlots<Item>;
  private readonly onRejected: (r: RejectedRecord) => void | Promise<void>;
  private readonly conflicts: ConflictWarning;

  constructor(
    private readonly ctx: HandlingContext,
    private readonly onRecord: (record: UsageRecord) => void | Promise<void>,
  ) {
    const { o, log } = ctx;
    this.conflicts = new ConflictWarning(log, "passed to onRejected");
    this.onRejected =
      o.onRejected ??
      ((r: RejectedRecord) =>
        log("warn", `rejected a record that cannot be billed: ${r.reason}`, {
          recordId: r.recordId,
          producer: r.producer,
          bytes: r.payload.length,
        }));
    this.slots = new WorkSlots<Item>({
      slots: o.concurrency,
      timeoutMs: o.handlerTimeoutMs,
      retryBaseMs: o.connection.reconnectBaseMs,
      retryMaxMs: o.connection.reconnectMaxMs,
      next: () => this.take(),
      // Done (counted, its message's part finished) once, by the first call that succeeded.
      run: (item) => ("record" in item ? this.runRecord(item) : this.runRejected(item)),
      failed: (item, err, attempt, delayMs) => {
        ctx.counters.failed++;
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
  }

  add(d: Delivery): void {
    d.left = d.records.length + d.rejected.length;
    if (d.left === 0) {
      this.ctx.done(d);
      return;
    }
    for (const [i, record] of d.records.entries()) {
      this.queue.push({ d, record, digest: d.digests[i] as string });
    }
    for (const rejected of d.rejected) this.queue.push({ d, rejected });
    this.slots.pump();
  }

  idle(): Promise<void> {
    return this.slots.idle();
  }

  stop(): void {
    this.slots.stop();
    this.conflicts.stop();
  }

  private take(): Item | undefined {
    if (this.head === this.queue.length) return undefined;
    const item = this.queue[this.head];
    this.queue[this.head++] = undefined;
    if (this.head === this.queue.length || this.head > 4096) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  private finish(d: Delivery): void {
    if (--d.left === 0) this.ctx.done(d);
  }

  /**
   * One record: a duplicate or a conflict by the dedupe window or by the claim on its id, a copy
   * that waits for the record holding its id, or a call of `onRecord` under the claim.
   */
  private async runRecord(item: RecordItem): Promise<() => void> {
    const { record, digest } = item;
    const before = this.ctx.window.digest(record.id);
    if (before === digest) return () => this.duplicate(item);
    // Its id was handled with other bytes: not billed again, passed on as rejected.
    if (before !== undefined) return this.conflict(item, "handled before with other content");
    let claim = this.claims.get(record.id);
    if (claim !== undefined && claim.owner !== item) {
      if (claim.digest !== digest) return this.conflict(item, "being handled with other content");
      claim.waiting.push(item); // decided by the outcome of the record that holds the id
      return () => {};
    }
    claim ??= this.claims.take(record.id, digest, item);
    claim.running++;
    const start = performance.now();
    try {
      await this.onRecord(record);
    } catch (err) {
      // Failed: let the id go, so that a copy waiting for it is handled on its own meanwhile.
      if (--claim.running === 0) this.requeue(this.claims.release(claim));
      throw err;
    }
    claim.running--;
    const durationMs = performance.now() - start;
    const held = claim;
    return () => this.handled(item, held, durationMs);
  }

  /** `onRecord` succeeded for `item`, which claimed its id (or did, before a failure). */
  private handled(item: RecordItem, claim: IdClaim<RecordItem>, durationMs: number): void {
    const { record, digest } = item;
    const { window, counters } = this.ctx;
    const first = window.digest(record.id); // a late call that had timed out may have finished
    if (first === undefined) {
      window.add(record.id, digest);
      counters.handled++;
      this.ctx.batches.wrote([record], 0, durationMs);
    } else if (first === digest) counters.duplicates++;
    else counters.idConflicts++;
    this.finish(item.d);
    const waiting = this.claims.release(claim);
    if (first === undefined || first === digest) {
      for (const w of waiting) this.duplicate(w); // the same bytes, handled
    } else this.requeue(waiting);
  }

  private duplicate(item: RecordItem): void {
    this.ctx.counters.duplicates++;
    this.finish(item.d);
  }

  private async conflict(item: RecordItem, what: string): Promise<() => void> {
    await this.onRejected(idConflict(item.record, what));
    return () => {
      this.ctx.counters.idConflicts++;
      this.conflicts.add(1, item.record.id);
      this.finish(item.d);
    };
  }

  private async runRejected(item: { d: Delivery; rejected: RejectedRecord }) {
    await this.onRejected(item.rejected);
    return () => {
      this.ctx.counters.rejectedDeliveries++;
      this.finish(item.d);
    };
  }

  /** Items to decide again (copies whose record let its id go): queued, and started if a slot is free. */
  private requeue(items: RecordItem[]): void {
    if (items.length === 0) return;
    this.queue.push(...items);
    this.slots.pump();
  }
}
