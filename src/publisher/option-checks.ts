import type { KeyObject } from "node:crypto";
import { BillingError } from "../billing-error.js";
import { MAX_TIMER_MS } from "../common/deadline.js";
import { isPemText } from "../common/pem.js";
import { nameProblem } from "../common/text.js";
import { ed25519PublicKey, signerProblem } from "../keys/signed-key-update.js";
import type { RecordSpool } from "./record-spool.js";

// The checks resolveOptions() runs on the options it filled (defaults live in options.ts).

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

/** The spool, checked to be a `RecordSpool`. */
export function checkSpool(spool: Partial<RecordSpool> | undefined): void {
  if (
    spool !== undefined &&
    (typeof spool !== "object" ||
      spool === null ||
      typeof spool.load !== "function" ||
      typeof spool.append !== "function" ||
      typeof spool.remove !== "function" ||
      typeof spool.count !== "function" ||
      typeof spool.close !== "function")
  ) {
    throw BillingError.invalid(
      "spool",
      "must be a RecordSpool, e.g. new SqliteSpool({ path }) from billing-sdk/spool",
    );
  }
}

/** `keyUpdatePublicKeys` as Ed25519 public keys by signer name; throws naming the bad entry. */
export function publicKeysOf(value: unknown): Map<string, KeyObject> {
  const keys = new Map<string, KeyObject>();
  if (value === undefined) return keys;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw BillingError.invalid(
      "keyUpdatePublicKeys",
      'must be an object: { "<signer>": "<Ed25519 public key PEM>" }',
    );
  }
  for (const [signer, key] of Object.entries(value)) {
    const problem = signerProblem(signer);
    if (problem !== undefined) {
      throw BillingError.invalid(
        `keyUpdatePublicKeys[${JSON.stringify(signer)}]`,
        `the signer name ${problem}`,
      );
    }
    keys.set(signer, ed25519PublicKey(`keyUpdatePublicKeys.${signer}`, key));
  }
  return keys;
}

/** `keyUpdateAudience`, checked to be a name of 1..128 characters. */
export function audience(value: unknown): void {
  const problem =
    typeof value !== "string" || value === "" || value.length > 128
      ? 'must be a name of 1..128 characters (the deployment, e.g. "prod")'
      : nameProblem(value);
  if (problem !== undefined) throw BillingError.invalid("keyUpdateAudience", problem);
}

/** `value`, checked to be a boolean. */
export function flag(name: string, value: unknown): void {
  if (typeof value !== "boolean") {
    throw BillingError.invalid(name, `must be true or false, not ${String(value)}`);
  }
}
