import { BillingError } from "../billing-error.js";

/** One record as a spool stores it: its order, its id and its encoded bytes. */
export interface SpooledRecord {
  /**
   * The record's place in the order records were accepted: it grows, across restarts too (the
   * client continues after the highest one `load()` returns); `remove()` names records by it.
   */
  readonly seq: number;
  /** The record's id (`UsageRecord.id`, a UUIDv7). */
  readonly id: string;
  /** The encoded `UsageRecord`. */
  readonly bytes: Uint8Array;
}

/**
 * Durable storage for records between `reportUsage` and their PUBACK (an outbox). The SDK calls
 * it from one thread, in order; every method is synchronous and throws on failure (the SDK turns
 * that into a `BillingError` `SPOOL`). `SqliteSpool` (`billing-sdk/spool`) is one; your own must
 * pass the contract suite, `spoolContractCases` from `billing-sdk/spool`.
 */
export interface RecordSpool {
  /** The records left by an earlier run, oldest (lowest seq) first. Called once, at start. */
  load(): SpooledRecord[];
  /** Stores records durably, all or none (one transaction). */
  append(records: readonly SpooledRecord[]): void;
  /** Forgets acknowledged records (unknown seqs are ignored). */
  remove(seqs: readonly number[]): void;
  /** How many records are stored. */
  count(): number;
  /** Releases the storage (and its lock). Idempotent. */
  close(): void;
}

/** The spool, checked to be a `RecordSpool`. */
export function checkSpool(spool: Partial<RecordSpool> | undefined): void {
  if (
    spool !== undefined &&
    (typeof spool !== "object" ||
      spool === null ||
      typeof spool.load !== "function" ||
      typeof spool.append !== "function" ||
      typeof spool.remove !== "function" ||
      typeof spool.count !== "function" ||
      typeof spool.close !== "function")
  ) {
    throw BillingError.invalid(
      "spool",
      "must be a RecordSpool, e.g. new SqliteSpool({ path }) from billing-sdk/spool",
    );
  }
}
