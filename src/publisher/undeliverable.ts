import type { LogLevel } from "../common/logger.js";
import type { PendingRecord } from "./pending-record.js";

/**
 * Holds `record` apart as undeliverable (kept, and pending, so flush and close report it;
 * counted) and logs why at error level. An oversized record is never retried in this process;
 * one that dropped the connection is tried again after `HELD_RETRY_MS` (`releaseLater`).
 */
export function holdUndeliverable(
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
 * How long a record held after dropping the connection each time it was sent alone waits before
 * it is tried once more: the drops may have had another cause (a broker in a crash loop, a
 * middlebox resetting connections, a broker that disconnects on a denied publish), and a record
 * must never be given up for good while the process lives. One more drop holds it again.
 */
export const HELD_RETRY_MS = 5 * 60_000;

/** Takes `record` out of `held` after `ms` and gives it to `release` (an unref'd timer). */
export function releaseLater(
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
