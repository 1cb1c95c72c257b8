/** One accepted record waiting for the broker's acknowledgement. */
export interface PendingRecord {
  /** Order of acceptance: records go out oldest (lowest) first. */
  readonly seq: number;
  /** The record's UUIDv7, for logs. */
  readonly id: string;
  /** The encoded `UsageRecord`. */
  readonly bytes: Buffer;
  /** Failed publish attempts so far (refusals and losses): the retry delay grows with them. */
  attempts: number;
  /** Connections lost in a row while this record was in flight (see `SendPipeline`). */
  losses: number;
}
