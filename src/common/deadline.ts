import { BillingError } from "../billing-error.js";

/** The longest delay a Node timer takes; longer ones (and Infinity) fire after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Checks a timeout given to a public call: a number of milliseconds ≥ 0 (`Infinity`, or anything
 * at least `MAX_TIMER_MS`, ~24.8 days, means no deadline). Returns a promise rejected with
 * `INVALID_ARGUMENT` for anything else, undefined for a good one.
 */
export function badTimeout(ms: unknown, name = "timeoutMs"): Promise<never> | undefined {
  if (typeof ms === "number" && !Number.isNaN(ms) && ms >= 0) return undefined;
  return Promise.reject(
    BillingError.invalid(name, `must be a number of milliseconds ≥ 0, not ${String(ms)}`),
  );
}

/**
 * Settles like `promise`, or rejects with `TIMEOUT` ("<what> after <ms> ms") when it has not
 * settled within `ms` (≥ `MAX_TIMER_MS` or Infinity: no deadline). The timer is not unref'ed:
 * someone awaits this deadline, and the process must live to see it settle. `onTimeout` runs
 * first when the deadline wins (to clean up).
 */
export function withDeadline<T>(
  promise: Promise<T>,
  ms: number,
  what: string | (() => string),
  onTimeout?: () => void,
): Promise<T> {
  if (ms >= MAX_TIMER_MS) return promise;
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      onTimeout?.();
      const text = typeof what === "string" ? what : what();
      reject(new BillingError("TIMEOUT", `${text} after ${ms} ms`));
    }, ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

/** Resolves after `ms`, or earlier when `promise` settles (either way); never rejects. */
export function atMost(promise: Promise<unknown>, ms: number): Promise<void> {
  return withDeadline(promise, ms, "").then(
    () => {},
    () => {},
  );
}
