import { BillingError } from "../billing-error.js";
import { MAX_TIMER_MS } from "./deadline.js";
import { isPemText } from "./pem.js";

// The checks the options of every part run on the values they filled (defaults live with each
// part's options).

/**
 * `value`, checked to be a positive (or, with `allowZero`, non-negative) safe integer ≤ `max`
 * (default: the longest delay a Node timer takes, for every option in milliseconds).
 */
export function positiveInt(
  name: string,
  value: number,
  allowZero = false,
  max = MAX_TIMER_MS,
): number {
  if (!Number.isSafeInteger(value) || value < 0 || (value === 0 && !allowZero) || value > max) {
    throw BillingError.invalid(
      name,
      `must be a ${allowZero ? "non-negative" : "positive"} integer ≤ ${max}, not ${String(value)}`,
    );
  }
  return value;
}

/** `value`, checked to be a TCP port. */
export function port(name: string, value: unknown): number {
  if (!Number.isSafeInteger(value) || (value as number) < 1 || (value as number) > 65535) {
    throw BillingError.invalid(name, `must be a port in 1..65535, not ${String(value)}`);
  }
  return value as number;
}

/**
 * A `ca`/`cert`/`key` must be PEM text: a path given by mistake would otherwise be accepted and
 * fail later like a missing CA.
 */
export function pem(name: string, value: unknown): void {
  if (value === undefined) return;
  const items = Array.isArray(value) ? value : [value];
  for (const item of items) {
    if (!isPemText(item)) {
      // The value is never echoed: it may be key material in another format.
      throw BillingError.invalid(
        name,
        `must be PEM text ("-----BEGIN ..."), not a path: pass the file's contents: readFileSync("${name}.pem", "utf8")`,
      );
    }
  }
}
