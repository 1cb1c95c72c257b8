import type { BillingLogger } from "../../common/logger.js";

/** Says what is left behind when the process exits with records not acknowledged. */
export function warnAtExit(pending: number, spooled: boolean, log: BillingLogger): void {
  if (pending === 0) return;
  log(
    "error",
    spooled
      ? `the process is exiting with ${pending} usage records not acknowledged: they stay in the spool and are sent by the next start`
      : `the process is exiting with ${pending} usage records not acknowledged: they are lost (await client.close() before the process ends, or use closeOnSignals)`,
  );
}
