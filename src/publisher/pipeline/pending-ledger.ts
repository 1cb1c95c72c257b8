import { BillingError } from "../../billing-error.js";
import { withDeadline } from "../../common/deadline.js";

interface FlushWaiter {
  /** The highest seq accepted when flush() was called: only records up to it are waited for. */
  readonly watermark: number;
  /** Records up to the watermark still pending. */
  remaining: number;
  readonly resolve: () => void;
}

/**
 * Counts the records accepted and not yet settled (acknowledged by the broker, or refused by the
 * spool), and their encoded bytes: the bounds `maxQueued` and `maxQueuedBytes` are checked here.
 *
 * `flush()` waits with a watermark, as OpenTelemetry's batch processor does with its flush count:
 * it resolves once every record accepted **before** the call is settled, however many arrive
 * after it. Every record pending at the call has a seq at or below the watermark (seqs grow), so
 * a waiter needs only a count: each settled record at or below its watermark takes one off.
 */
export class PendingLedger {
  private count = 0;
  private byteCount = 0;
  private lastSeq = -1;
  private readonly waiters = new Set<FlushWaiter>();

  constructor(
    private readonly maxCount: number,
    private readonly maxBytes: number,
  ) {}

  /** Records accepted and not yet settled. */
  get pending(): number {
    return this.count;
  }

  /** Their encoded bytes. */
  get bytes(): number {
    return this.byteCount;
  }

  /** Throws `QUEUE_FULL` when one more record of `size` bytes would pass a bound. */
  checkRoom(size: number): void {
    if (this.count >= this.maxCount) {
      throw new BillingError(
        "QUEUE_FULL",
        `${this.count} records are waiting for the broker (maxQueued ${this.maxCount}); record refused`,
      );
    }
    if (this.byteCount + size > this.maxBytes) {
      throw new BillingError(
        "QUEUE_FULL",
        `${this.byteCount} bytes of records are waiting for the broker (maxQueuedBytes ${this.maxBytes}); a record of ${size} bytes was refused`,
      );
    }
  }

  /** A record was accepted; seqs must grow. */
  add(seq: number, size: number): void {
    this.count++;
    this.byteCount += size;
    if (seq > this.lastSeq) this.lastSeq = seq;
  }

  /** A record left for good: acknowledged, or refused by the spool. */
  settle(seq: number, size: number): void {
    this.count--;
    this.byteCount -= size;
    for (const w of this.waiters) {
      if (seq <= w.watermark && --w.remaining === 0) {
        this.waiters.delete(w);
        w.resolve();
      }
    }
  }

  /** Whether a pending `flush()` (or `close()`, which flushes) waits for the record `seq`. */
  awaited(seq: number): boolean {
    for (const w of this.waiters) if (seq <= w.watermark) return true;
    return false;
  }

  /**
   * Resolves once every record accepted before this call is settled; rejects with `TIMEOUT`
   * (saying how many of those remain) after `timeoutMs`.
   */
  flush(timeoutMs: number): Promise<void> {
    if (this.count === 0) return Promise.resolve();
    let waiter: FlushWaiter | undefined;
    const settled = new Promise<void>((resolve) => {
      waiter = { watermark: this.lastSeq, remaining: this.count, resolve };
      this.waiters.add(waiter);
    });
    const w = waiter as FlushWaiter;
    return withDeadline(
      settled,
      timeoutMs,
      () => `${w.remaining} records not yet acknowledged`,
      () => this.waiters.delete(w),
    );
  }
}
