import { constants } from "node:os";
import { BillingError } from "../billing-error.js";
import { type BillingLogger, consoleLogger } from "../common/logger.js";
import type { BillingClient } from "./billing-client.js";
import { positiveInt } from "./option-checks.js";

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
}

/**
 * Closes `client` cleanly when the process gets one of `signals` (SIGTERM, SIGINT): it stops
 * accepting records, waits up to `timeoutMs` for the queued ones to be acknowledged, sends the
 * goodbye heartbeat, logs how it went, and then lets the process end the way it would have
 * without this helper: its own listeners are removed first, and when no other listener of that
 * signal is left, the signal is raised again (`process.kill(process.pid, signal)`), so the process
 * dies by it (exit status 128 + n, as a supervisor expects). When the application has its own
 * listener for that signal, Node does not end the process on the signal, and neither does this
 * helper: that listener decides (it should `await client.close()` before exiting, or the flush is
 * cut short). A second signal during the flush is not caught: it acts at once (press Ctrl-C
 * twice to leave without waiting). Off unless called: a library that takes over signal handling
 * by itself surprises people. Returns a function that removes the listeners (before a signal).
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
  const log = options.logger ?? consoleLogger;
  const say = (level: "info" | "error", message: string, fields?: Record<string, unknown>) => {
    try {
      log(level, message, fields);
    } catch {
      // a logger that throws must not stop the shutdown
    }
  };

  const uninstall = () => {
    for (const s of signals) process.off(s, onSignal);
  };
  function onSignal(signal: NodeJS.Signals): void {
    uninstall();
    say("info", `${signal}: closing the billing client`, { queued: client.stats().queued });
    client
      .close(timeoutMs)
      .then(
        () => say("info", "billing client closed: every accepted record was acknowledged"),
        (err: unknown) => say("error", `billing client closed: ${(err as Error).message}`),
      )
      .finally(() => {
        // Other listeners: the application handles the signal (Node would not exit either).
        if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
      });
  }
  for (const s of signals) process.on(s, onSignal);
  return uninstall;
}
