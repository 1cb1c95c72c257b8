import type { LogLevel } from "../common/logger.js";
import type { PendingRecord } from "./pending-record.js";

/**
 * Holds `record` apart as undeliverable (kept, and pending, so flush and close report it;
 * counted; never retried in this process) and logs why at error level.
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
