import type { UsageRecord } from "../../gen/billing/v1/usage_pb.js";

/** One write that succeeded: a `store.write` (a batch), or one `onRecord` call (one record). */
export interface ConsumerBatch {
  /** Records in it (new ones and those the store found it already had). Rejections not counted. */
  readonly records: number;
  /** Rejections in it (store only: `onRejected` calls are not observed). */
  readonly rejected: number;
  /** How long the successful `store.write` (the transaction) or `onRecord` call took, in ms. */
  readonly durationMs: number;
  /**
   * The lag: how old its oldest record was when the write succeeded (now − the record's
   * `occurred_at`, in ms; never below 0). Undefined when it held no record with a time.
   */
  readonly lagMs: number | undefined;
}

/** A function told of each batch the consumer wrote; it must not throw (what it throws is ignored). */
export type BatchObserver = (batch: ConsumerBatch) => void;

/**
 * The consumer's observers and its last batch's lag. `wrote()` costs one pass over the batch's
 * records (their oldest time) and nothing more while nobody observes.
 */
export class BatchObservers {
  private readonly observers = new Set<BatchObserver>();
  /** The lag of the last batch with a timed record (`stats().lagMs`). */
  lastLagMs: number | undefined;

  add(observer: BatchObserver): () => void {
    // Each registration is its own: the same function added twice is told twice, removed apart.
    const own: BatchObserver = (b) => observer(b);
    this.observers.add(own);
    return () => {
      this.observers.delete(own);
    };
  }

  /** A write of `records` (and `rejected` rejections) that took `durationMs` succeeded. */
  wrote(records: readonly UsageRecord[], rejected: number, durationMs: number): void {
    let oldest = Number.POSITIVE_INFINITY;
    for (const r of records) {
      const t = r.occurredAt;
      if (t !== undefined) {
        const ms = Number(t.seconds) * 1000 + t.nanos / 1e6;
        if (ms < oldest) oldest = ms;
      }
    }
    const lagMs =
      oldest === Number.POSITIVE_INFINITY ? undefined : Math.max(0, Date.now() - oldest);
    if (lagMs !== undefined) this.lastLagMs = lagMs;
    if (this.observers.size === 0) return;
    const batch: ConsumerBatch = { records: records.length, rejected, durationMs, lagMs };
    for (const o of this.observers) {
      try {
        o(batch);
      } catch {
        // An observer's bug must not stop the consumer acknowledging.
      }
    }
  }
}
