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
  /** Records skipped or not stored again because their id was handled before. */
  duplicates: number;
  /** Records (or whole messages) that cannot be billed: kept as rejected, and acknowledged. */
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
