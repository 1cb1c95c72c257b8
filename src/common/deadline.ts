import { BillingError } from "../billing-error.js";

/**
 * Settles like `promise`, or rejects with `TIMEOUT` ("<what> after <ms> ms") when it has not
 * settled within `ms`. The timer is not unref'ed: someone awaits this deadline, and the process
 * must live to see it settle. `onTimeout` runs first when the deadline wins (to clean up).
 */
export function withDeadline<T>(
  promise: Promise<T>,
  ms: number,
  what: string | (() => string),
  onTimeout?: () => void,
): Promise<T> {
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
