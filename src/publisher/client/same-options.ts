import { KeyObject } from "node:crypto";
import { type BillingClientOptions, type ResolvedOptions, resolveOptions } from "./options.js";

function isPlain(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && Object.getPrototypeOf(v) === Object.prototype;
}

function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Buffer.isBuffer(a) && Buffer.isBuffer(b)) return a.equals(b);
  if (a instanceof KeyObject && b instanceof KeyObject) return a.equals(b);
  if (a instanceof Map && b instanceof Map) {
    return a.size === b.size && [...a].every(([k, v]) => b.has(k) && sameValue(v, b.get(k)));
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((v, i) => sameValue(v, b[i]));
  }
  // Plain option objects (the spool's) compare by content.
  if (isPlain(a) && isPlain(b)) {
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => sameValue(a[k], b[k]));
  }
  return false;
}

/**
 * Whether two option objects configure the same client (the singleton's test). Defaults count:
 * `{}` and `{ brokerHost: "localhost" }` are equal; functions (the logger) compare by identity;
 * an unset `clientId` (random by default) equals only another unset one.
 */
export function sameOptions(a: BillingClientOptions, b: BillingClientOptions): boolean {
  if (a.clientId !== b.clientId) return false;
  const ra = resolveOptions({ ...a, clientId: "-" });
  const rb = resolveOptions({ ...b, clientId: "-" });
  return (Object.keys(ra) as Array<keyof ResolvedOptions>).every((k) => sameValue(ra[k], rb[k]));
}
