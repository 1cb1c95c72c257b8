import type { UsageRecord } from "../../gen/billing/v1/usage_pb.js";

/** What the consumer's validation refused: kept for a person to look at (a dead letter). */
export interface RejectedRecord {
  /** Why it cannot be billed, e.g. `apiKeySha256: must be 64 lowercase hex characters`. */
  readonly reason: string;
  /**
   * The bytes as they arrived: the record's own bytes, or the whole message's when it was not a
   * `UsageBatch` (or held no record).
   */
  readonly payload: Uint8Array;
  /** The id the record claimed, when it decoded (it may be the malformed value itself). */
  readonly recordId?: string | undefined;
  /** The producer the record named, when it decoded. */
  readonly producer?: string | undefined;
}

/** What a store writes at once: the records and rejections of one or more MQTT messages. */
export interface UsageWrite {
  /**
   * Valid records. An id may come twice only with different content (the consumer passes a
   * byte-identical repeat once): the first is stored, the second is a conflict.
   */
  readonly records: readonly UsageRecord[];
  /** What validation refused. */
  readonly rejected: readonly RejectedRecord[];
}

/** What a store reports about a write. */
export interface UsageWriteResult {
  /**
   * How many of the records were new (the others were stored before: duplicates, or conflicts).
   */
  readonly inserted: number;
  /** Records the store itself could not keep as billable and kept as rejected instead. */
  readonly rejected?: number | undefined;
  /**
   * Indexes (in `records`) of the records whose id was stored before with different content:
   * not billed, kept as rejected (the reason names the id). Default: none.
   */
  readonly conflicts?: readonly number[] | undefined;
  /**
   * Rejections newly kept by this write (validation's, the store's own refusals and conflicts; a
   * payload kept before is not counted again). Default: each counted as new.
   */
  readonly rejectedStored?: number | undefined;
}

/**
 * Where a consumer puts records, e.g. `createPostgresUsageStore()` from `billing-sdk/postgres`.
 * `write` resolves only once the whole batch is durable (committed), all or nothing, and must
 * be idempotent: a record written again (same `id`) is not counted again, and one whose `id` was
 * stored with other content is never billed (report it in `conflicts`). `records` may hold one
 * `id` twice, with different content. The consumer
 * acknowledges the batch's messages after `write` resolves; when it rejects (or times out), the
 * messages stay unacknowledged and the batch is written again.
 */
export interface UsageStore {
  /** Writes `batch` durably, all or nothing; resolves once it is committed. */
  write(batch: UsageWrite): Promise<UsageWriteResult>;
}
