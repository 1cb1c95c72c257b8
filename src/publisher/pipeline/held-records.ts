import type { LogLevel } from "../../common/logger.js";
import type { PendingRecord } from "../pending-record.js";

/**
 * Holds `record` apart as undeliverable (kept, and pending, so flush and close report it;
 * counted) and logs why at error level. An oversized record is never retried in this process;
 * one that dropped the connection is tried again after `HELD_RETRY_MS` (`releaseLater`).
 */
function holdUndeliverable(
  held: PendingRecord[],
  record: PendingRecord,
  why: string,
  log: (level: LogLevel, message: string, fields?: Record<string, unknown>) => void,
  fields: Record<string, unknown> = {},
): void {
  held.push(record);
  log(
    "error",
    `record ${record.id} (${record.bytes.length} bytes) ${why}: held as undeliverable, never published`,
    { undeliverable: held.length, ...fields },
  );
}

/**
 * Connections a suspect dropped while alone after which it is held as undeliverable: kept (and
 * pending, so flush and close report it), counted, logged, tried once more after 5 minutes.
 */
export const UNDELIVERABLE_AFTER_SOLO_DROPS = 3;

/**
 * How long a record held after dropping the connection each time it was sent alone waits before
 * it is tried once more: the drops may have had another cause (a broker in a crash loop, a
 * middlebox resetting connections, a broker that disconnects on a denied publish), and a record
 * must never be given up for good while the process lives. One more drop holds it again.
 */
export const HELD_RETRY_MS = 5 * 60_000;

/** Takes `record` out of `held` after `ms` and gives it to `release` (an unref'd timer). */
function releaseLater(
  held: PendingRecord[],
  record: PendingRecord,
  ms: number,
  timers: Set<NodeJS.Timeout>,
  release: (record: PendingRecord) => void,
): void {
  const timer = setTimeout(() => {
    timers.delete(timer);
    const i = held.indexOf(record);
    if (i < 0) return;
    held.splice(i, 1);
    release(record);
  }, ms);
  timer.unref();
  timers.add(timer);
}

/**
 * The records held as undeliverable (`records`, counted in `stats().undeliverable`): an
 * oversized one for good, one that dropped the connection alone until `retryMs` have passed.
 */
export class HeldRecords {
  readonly records: PendingRecord[] = [];
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly log: (
      level: LogLevel,
      message: string,
      fields?: Record<string, unknown>,
    ) => void,
    private readonly retryMs: number,
  ) {}

  /** Holds a record larger than any batch the connection allows (`maxBytes`): never sent. */
  oversized(batch: readonly PendingRecord[], maxBytes: number): void {
    const why = `is larger than the largest batch this connection allows (${maxBytes} bytes: maxBatchBytes within the broker's maximum packet size)`;
    for (const r of batch) holdUndeliverable(this.records, r, why, this.log, { maxBytes });
  }

  /** Holds a record that dropped the connection `drops` times alone; `retry` gets it back later. */
  dropped(record: PendingRecord, drops: number, retry: (record: PendingRecord) => void): void {
    const why = `dropped the connection each of the ${drops} times it was sent alone (is it larger than the broker's message size limit?)`;
    holdUndeliverable(this.records, record, why, this.log);
    releaseLater(this.records, record, this.retryMs, this.timers, (r) => {
      this.log("warn", `record ${r.id}, held as undeliverable, is tried once more`);
      retry(r);
    });
  }

  stop(): void {
    for (const t of this.timers) clearTimeout(t);
  }
}
