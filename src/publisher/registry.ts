import type { BillingLogger } from "../common/logger.js";
import type { BillingClient } from "./billing-client.js";

// The process-wide instance lives on globalThis under a registered symbol, so that two copies of
// the package in one process (a dependency bundling its own) still share one connection.
const INSTANCE = Symbol.for("billing-sdk.BillingClient");
const registry = globalThis as { [INSTANCE]?: BillingClient };

/** The process-wide `BillingClient`, or undefined when none is open. */
export function getBillingClient(): BillingClient | undefined {
  return registry[INSTANCE];
}

// What the open client says if the process exits before it was closed (a CLI job that forgot
// close(), an event loop that emptied while the broker was unreachable): the records it still
// holds are lost in memory mode, and nothing else would say so.
let atExit: (() => void) | undefined;
let exitHooked = false;

/**
 * Makes `client` the process-wide one; `onExit` runs (synchronously) if the process exits while
 * it is registered.
 */
export function register(client: BillingClient, onExit: () => void): void {
  registry[INSTANCE] = client;
  atExit = onExit;
  if (!exitHooked) {
    exitHooked = true;
    process.on("exit", () => atExit?.());
  }
}

/**
 * Forgets `client` if it is the process-wide one. Its exit hook stays until another client
 * registers: a process that exits while `close()` still flushes says what it leaves behind (a
 * closed client has nothing pending and says nothing).
 */
export function unregister(client: BillingClient): void {
  if (registry[INSTANCE] === client) delete registry[INSTANCE];
}

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
