import type { BatchObserver } from "./batch-observers.js";

/** Counters of a consumer, totals since it was created. */
export interface UsageConsumerStats {
  /** Connected to a broker now. */
  connected: boolean;
  /** The MQTT version in use (or to try next): 5, or 4 (3.1.1). */
  protocolVersion: 4 | 5;
  /** Messages received on `<prefix>/report`. */
  received: number;
  /** Billable records in them (duplicates included). */
  records: number;
  /** Records handled for the first time: new in the store, or `onRecord` resolved. */
  handled: number;
  /** Records skipped or not stored again because their id was handled before, with this content. */
  duplicates: number;
  /**
   * Records whose id was handled before with different content (another usage, key, time…):
   * never billed; kept in `rejected_records` with a reason naming the id (a store), or passed
   * to `onRejected`. Counted each time one arrives.
   */
  idConflicts: number;
  /**
   * Rejections handled, each time one arrives: records (or whole messages) that cannot be
   * billed, and records the store refused. A payload the broker delivers twice counts twice;
   * conflicts are counted in `idConflicts` instead.
   */
  rejectedDeliveries: number;
  /**
   * Rows this consumer added to `rejected_records`: rejections, the store's refusals and
   * conflicts, each payload once (one stored before is not counted again). Summed over the
   * consumers of a group, it matches the table's new rows. 0 with `onRecord`.
   */
  rejectedStored: number;
  /** @deprecated The same as `rejectedDeliveries` (its former name). */
  rejected: number;
  /** `store.write` / `onRecord` attempts that failed or timed out (each is tried again). */
  failed: number;
  /** Messages received and not yet handled (unacknowledged). */
  pending: number;
  /** Connections made after the first one. */
  reconnects: number;
  /**
   * The lag of the last batch handled: how old its oldest record was (by `occurred_at`) when its
   * write succeeded, in ms. Undefined before the first one.
   */
  lagMs: number | undefined;
}

/** A running consumer. */
export interface UsageConsumer {
  /**
   * Resolves once the first connection is up and subscribed. Rejects with a `BillingError` when
   * no broker of the list accepts that first connection (`TLS`, `NOT_AUTHORIZED`, `UNREACHABLE`,
   * `TIMEOUT`, `PROTOCOL`) or refuses the subscription; the consumer is then closed. After that,
   * a lost connection is retried forever.
   */
  readonly ready: Promise<void>;
  /** A snapshot of the consumer's counters (a new object each call). */
  stats(): UsageConsumerStats;
  /**
   * Tells `observer` of every write that succeeded, after it is counted: a `store.write` (one
   * batch: the transaction's duration, its records, the age of its oldest record), or one
   * `onRecord` call of a new record. Failed attempts are not told (see `stats().failed`).
   * Returns a function that stops it. Used by `instrumentConsumer()` (`billing-sdk/otel`).
   */
  observeBatches(observer: BatchObserver): () => void;
  /**
   * Stops taking messages, waits (up to `closeTimeoutMs`) for those taken to be handled and
   * acknowledged, then disconnects; the persistent session keeps what arrives meanwhile. A second
   * call returns the first one's promise.
   */
  close(): Promise<void>;
}
