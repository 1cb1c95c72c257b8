import { Server } from "node:net";
import { constants } from "node:os";
import { BillingError } from "../../billing-error.js";
import { withDeadline } from "../../common/deadline.js";
import { type BillingLogger, consoleLogger } from "../../common/logger.js";
import { positiveInt } from "../../common/option-checks.js";
import type { BillingClient } from "./billing-client.js";
import { serverDrain } from "./server-drain.js";

/**
 * A signal this soon after the first is taken as the same request: wrappers (npm, tsx, a shell
 * in a container) forward the signal the process got too, a few ms to a few hundred ms later.
 */
const REPEAT_SIGNAL_MS = 1000;

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
   * What to finish before the billing client closes, so that the calls in flight complete and
   * the usage they report is flushed with the rest: your HTTP server (`node:http`, `node:https`
   * or `node:http2`; pass it in the tick that calls `listen()`, or before: passed later, it is
   * logged at once, since HTTP/2 sessions opened before are seen only when they start a call),
   * which then stops accepting connections, lets the calls in flight finish (HTTP/2: a GOAWAY to
   * each session; HTTP/1.1: `Connection: close` on every response not yet sent, idle connections
   * closed) and is closed; or a function that does the same for another server
   * (`() => app.close()`). Default: none: the client closes at once, and calls still in flight
   * can no longer report usage and are cut when the process ends.
   */
  drain?: Server | (() => Promise<unknown>) | undefined;
  /**
   * How long `drain` may take, in ms: then the connections still open are cut (a function is no
   * longer waited for) and the client closes. `drainTimeoutMs` + `timeoutMs` must stay under your
   * platform's grace period. Default: `10_000`.
   */
  drainTimeoutMs?: number | undefined;
  /**
   * What happens once the client is closed. `"signal"`: the signal is raised again, so the process
   * ends the way it would have without the helper (it dies by the signal: exit status 128 + n).
   * `"none"`: nothing; for an application with its own shutdown handler, which then awaits
   * `client.close()` (a second call returns the same promise) and ends the process itself.
   * Default: `"signal"`.
   */
  exit?: "signal" | "none" | undefined;
}

/** The checked options, with their defaults. */
function checkedOptions(options: CloseOnSignalsOptions) {
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
  const drainTimeoutMs = positiveInt("drainTimeoutMs", options.drainTimeoutMs ?? 10_000, true);
  const drain = options.drain;
  if (drain !== undefined && typeof drain !== "function" && !(drain instanceof Server)) {
    throw BillingError.invalid(
      "drain",
      "must be a Node server (node:http, node:https, node:http2) or a function returning a promise",
    );
  }
  const exit = options.exit ?? "signal";
  if (exit !== "signal" && exit !== "none") {
    throw BillingError.invalid("exit", `must be "signal" or "none", not ${String(exit)}`);
  }
  return { signals, timeoutMs, drain, drainTimeoutMs, exit, log: options.logger ?? consoleLogger };
}

/** A logger that never throws: one that does must not stop the shutdown. */
function safe(log: BillingLogger) {
  return (level: "info" | "warn" | "error", message: string, fields?: Record<string, unknown>) => {
    try {
      log(level, message, fields);
    } catch {
      // a logger that throws must not stop the shutdown
    }
  };
}

/** A drain function bounded by `drainTimeoutMs`: resolves with what went wrong, if anything. */
function bounded(
  fn: () => Promise<unknown>,
  drainTimeoutMs: number,
): () => Promise<string | undefined> {
  return () => {
    let late = false;
    const mark = () => {
      late = true;
    };
    return withDeadline(Promise.resolve().then(fn), drainTimeoutMs, "", mark).then(
      () => undefined,
      (err: unknown) =>
        late
          ? `drain did not finish within ${drainTimeoutMs} ms`
          : `drain failed: ${(err as Error)?.message ?? String(err)}`,
    );
  };
}

/** Closes `client` (up to `timeoutMs`) and says how it went: all acknowledged, or what is left. */
function closeAndSay(
  client: BillingClient,
  timeoutMs: number | undefined,
  say: ReturnType<typeof safe>,
): Promise<void> {
  return client.close(timeoutMs).then(
    () => {
      // With a spool, a close that ran out of time resolves: what is left stays there.
      const left = client.stats().queued;
      if (left === 0) say("info", "billing client closed: every accepted record was acknowledged");
      else
        say(
          "error",
          `billing client closed: ${left} records not acknowledged stay in the spool for the next start`,
        );
    },
    (err: unknown) => say("error", `billing client closed: ${(err as Error).message}`),
  );
}

/**
 * Closes `client` cleanly when the process gets one of `signals` (SIGTERM, SIGINT): first it
 * drains `drain` (your server: the calls in flight finish and report their usage), then it stops
 * accepting records, waits up to `timeoutMs` for the queued ones to be acknowledged, sends the
 * goodbye heartbeat, logs how it went, removes its listeners and then (with `exit: "signal"`, the
 * default) raises the signal again, so the process dies by it as it would have without the helper.
 * Its listener is the first of the process's (prepended) and stays installed while it closes:
 * other listeners that end the process when they are the last one (`signal-exit`, used by many
 * tools) see it and wait. A signal within `REPEAT_SIGNAL_MS` (1 s) of the first is taken as the
 * same request (npm, tsx and other wrappers forward the signal their child got too); one after
 * that ends the process at once (press Ctrl-C again to leave without waiting). Off unless called:
 * a library that takes over signal handling by itself surprises people. Returns a function that
 * removes the listeners (before a signal).
 */
export function closeOnSignals(
  client: BillingClient,
  options: CloseOnSignalsOptions = {},
): () => void {
  const { signals, timeoutMs, drain, drainTimeoutMs, exit, log } = checkedOptions(options);
  const say = safe(log);
  // A server is watched from now on (its HTTP/2 sessions); a function is bounded by the deadline.
  // Each resolves with what went wrong, if anything.
  const watched = drain instanceof Server ? serverDrain(drain, drainTimeoutMs) : undefined;
  if (watched?.warning !== undefined) say("warn", watched.warning);
  const drained =
    watched?.drain ?? (typeof drain === "function" ? bounded(drain, drainTimeoutMs) : undefined);

  let firstAt: number | undefined;
  let ended = false;
  const uninstall = () => {
    for (const s of signals) process.off(s, onSignal);
    if (firstAt === undefined) watched?.unwatch(); // removed before a signal: let go of the server
  };
  const end = (signal: NodeJS.Signals) => {
    uninstall();
    if (ended) return;
    ended = true;
    if (exit === "signal") process.kill(process.pid, signal);
  };
  const closeClient = () => closeAndSay(client, timeoutMs, say);
  function onSignal(signal: NodeJS.Signals): void {
    if (firstAt !== undefined) {
      if (performance.now() - firstAt < REPEAT_SIGNAL_MS) {
        say(
          "info",
          `${signal} again within ${REPEAT_SIGNAL_MS} ms: taken as the same request (wrappers such as npm or tsx forward it); send it again later to leave without waiting`,
        );
        return;
      }
      say(
        "error",
        exit === "signal"
          ? `${signal} again: leaving without waiting for the billing client`
          : `${signal} again: the billing client is still closing; its listener is removed`,
      );
      end(signal);
      return;
    }
    firstAt = performance.now();
    if (drained === undefined) {
      say("info", `${signal}: closing the billing client`, { queued: client.stats().queued });
      void closeClient().finally(() => end(signal));
      return;
    }
    say(
      "info",
      `${signal}: draining the server (the calls in flight finish), then closing the billing client`,
    );
    void drained()
      .then((problem) => {
        const queued = client.stats().queued;
        if (problem === undefined) say("info", "drained: closing the billing client", { queued });
        else say("error", `${problem}: closing the billing client anyway`, { queued });
        return closeClient();
      })
      .finally(() => end(signal));
  }
  for (const s of signals) process.prependListener(s, onSignal);
  return uninstall;
}
