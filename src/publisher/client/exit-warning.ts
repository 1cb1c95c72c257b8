import type { BillingLogger } from "../../common/logger.js";

/** What a client leaves behind when the process exits (see `warnAtExit`). */
export interface LeftAtExit {
  /** Records accepted and not acknowledged by the broker. */
  pending: number;
  /** Of those, the ones stored in a spool (sent by the next start); 0 without a spool. */
  spooled: number;
  /** Whether `close()` was called (then its advice is not repeated). */
  closing: boolean;
}

/** Says what is left behind when the process exits with records not acknowledged. */
export function warnAtExit(left: LeftAtExit, log: BillingLogger): void {
  const { pending, spooled } = left;
  if (pending === 0) return;
  const lost = pending - spooled;
  const advice = left.closing
    ? ""
    : " (await client.close() before the process ends, or use closeOnSignals)";
  const text =
    lost === 0
      ? "they stay in the spool and are sent by the next start"
      : spooled > 0
        ? `${spooled} stay in the spool and are sent by the next start; ${lost} were not stored yet (their reportUsage had not resolved): they are lost${advice}`
        : `they are lost${advice}`;
  log("error", `the process is exiting with ${pending} usage records not acknowledged: ${text}`);
}
