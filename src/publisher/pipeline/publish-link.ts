import type { LogLevel } from "../../common/logger.js";
import type { PendingRecord } from "../pending-record.js";
import type { PendingLedger } from "./pending-ledger.js";

/**
 * PUBACK reason codes about the topic (not authorized, topic name invalid): every record of a
 * batch would be refused alike, so its records wait out their delay without splitting it.
 */
export const TOPIC_REFUSALS = new Set([0x87, 0x90]);

/**
 * Where the pipeline publishes: one live connection. `send` publishes one batch of encoded
 * records as one QoS 1 message and calls `done` once, with the PUBACK (no error) or the failure:
 * an error whose numeric `code` is the broker's PUBACK reason code (≥ 0x80, or 0x10 when the
 * broker had no subscriber for the message and dropped it), or another error.
 */
export interface PublishLink {
  /** How many messages may await their PUBACK at once on this connection. */
  readonly window: number;
  /** The most bytes of one batch's payload on this connection. Default: no bound. */
  readonly maxBatchBytes?: number;
  /** Whether the connection is still up. */
  isUp(): boolean;
  send(records: readonly PendingRecord[], done: (err?: Error | null) => void): void;
  /** Holds this tick's writes back and sends them as one (optional). */
  cork?(): void;
}

/** What the pipeline needs from its owner. */
export interface SendPipelineHooks {
  ledger: PendingLedger;
  /** The delay before a refused record's next attempt (`attempts` ≥ 1). */
  retryDelay(attempts: number): number;
  /** Called for each acknowledged record, before the ledger settles it (the spool forgets it). */
  acknowledged(record: PendingRecord): void;
  log(level: LogLevel, message: string, fields?: Record<string, unknown>): void;
  /** The most records in one message. Default: 500. */
  maxBatchRecords?: number;
  /** The most bytes of one message's batch (also capped by the link). Default: 262,144. */
  maxBatchBytes?: number;
  /** How long a record held after solo drops waits to be tried again (tests). Default: 5 min. */
  heldRetryMs?: number | undefined;
  /** How long a batch that is not full may wait for more records. Default: 0. */
  lingerMs?: number;
  /** The topic published on, for what is logged. Default: "the report topic". */
  topic?: string;
  /** The waits between tries while there is no subscriber (tests). Default: 100 ms to 5 s. */
  noSubscriberMs?: { first: number; max: number } | undefined;
}
