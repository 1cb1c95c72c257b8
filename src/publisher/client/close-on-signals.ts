import { constants } from "node:os";
import { BillingError } from "../../billing-error.js";
import { type BillingLogger, consoleLogger } from "../../common/logger.js";
import { positiveInt } from "../../common/option-checks.js";
import type { BillingClient } from "./billing-client.js";

/** Options of `closeOnSignals()`. */
export interface CloseOnSignalsOptions {
  /** The signals that close the client. Default: `["SIGTERM", "SIGINT"]`. */
  signals?: readonly NodeJS.Signals[] | undefined;
  /**
   * How long `close()` may wait for the queued records to be acknowledged, in ms. Keep it under
   * your platform's grace period (Kubernetes: 30 s, minus what your server needs). Default: the
   * client's `closeTimeoutMs` (10 s).
   */
  timeoutMs?: number | undefined;
  /** Where the "closing" and goodbye lines go. Default: `console.error`, prefixed `[billing-sdk]`. */
  logger?: BillingLogger | undefined;
  /**
   * What happens once the client is closed. `"signal"`: the signal is raised again, so the process
   * ends the way it would have without the helper (it dies by the signal: exit status 128 + n).
   * `"none"`: nothing; for an application with its own shutdown handler, which then awaits
   * `client.close()` (a second call returns the same promise) and ends the process itself.
   * Default: `"signal"`.
   */
  exit?: "signal" | "none" | undefined;
}

/**
 * Closes `client` cleanly when the process gets one of `signals` (SIGTERM, SIGINT): it stops
 * accepting records, waits up to `timeoutMs` for the queued ones to be acknowledged, sends the
 * goodbye heartbeat, logs how it went, removes its listeners and then (with `exit: "signal"`, the
 * default) raises the signal again, so the process dies by it as it would have without the helper.
 * Its listener is the first of the process's (prepended) and stays installed while it closes:
 * other listeners that end the process when they are the last one (`signal-exit`, used by many
 * tools) see it and wait. A second signal while it closes ends the process at once (press Ctrl-C
 * twice to leave without waiting). Off unless called: a library that takes over signal handling by
 * itself surprises people. Returns a function that removes the listeners (before a signal).
 */
export function closeOnSignals(
  client: BillingClient,
  options: CloseOnSignalsOptions = {},
): () => void {
  const signals = options.signals ?? ["SIGTERM", "SIGINT"];
  if (!Array.isArray(signals) || signals.length === 0) {
    throw BillingError.invalid("signals", "must be a non-empty array of signal names");
  }
  for (const s of signals) {
    if (typeof s !== "string" || !(s in constants.signals) || s === "SIGKILL" || s === "SIGSTOP") {
      throw BillingError.invalid("signals", `${String(s)} is not a signal that can be caught`);
    }
  }
  const timeoutMs = options.timeoutMs;
  if (timeoutMs !== undefined) positiveInt("timeoutMs", timeoutMs, true);
  const exit = options.exit ?? "signal";
  if (exit !== "signal" && exit !== "none") {
    throw BillingError.invalid("exit", `must be "signal" or "none", not ${String(exit)}`);
  }
  const log = options.logger ?? consoleLogger;
  const say = (level: "info" | "error", message: string, fields?: Record<string, unknown>) => {
    try {
      log(level, message, fields);
    } catch {
      // a logger that throws must not stop the shutdown
    }
  };

  let closing = false;
  let ended = false;
  const uninstall = () => {
    for (const s of signals) process.off(s, onSignal);
  };
  const end = (signal: NodeJS.Signals) => {
    uninstall();
    if (ended) return;
    ended = true;
    if (exit === "signal") process.kill(process.pid, signal);
  };
  function onSignal(signal: NodeJS.Signals): void {
    if (closing) {
      say(
        "error",
        exit === "signal"
          ? `${signal} again: leaving without waiting for the billing client`
          : `${signal} again: the billing client is still closing; its listener is removed`,
      );
      end(signal);
      return;
    }
    closing = true;
    say("info", `${signal}: closing the billing client`, { queued: client.stats().queued });
    client
      .close(timeoutMs)
      .then(
        () => {
          // With a spool, a close that ran out of time resolves: what is left stays there.
          const left = client.stats().queued;
          if (left === 0)
            say("info", "billing client closed: every accepted record was acknowledged");
          else
            say(
              "error",
              `billing client closed: ${left} records not acknowledged stay in the spool for the next start`,
            );
        },
        (err: unknown) => say("error", `billing client closed: ${(err as Error).message}`),
      )
      .finally(() => end(signal));
  }
  for (const s of signals) process.prependListener(s, onSignal);
  return uninstall;
}
