import { BillingError } from "./billing-error.js";

// MQTT reason codes that mean "you may not": 3.1.1 CONNACK 4 (bad user name or password) and
// 5 (not authorized); MQTT 5 134 (bad user name or password), 135 (not authorized), 138 (banned).
const NOT_AUTHORIZED = new Set([4, 5, 134, 135, 138]);
const UNREACHABLE = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ETIMEDOUT",
]);

/** True for a CONNACK that refuses the protocol version (3.1.1 code 1, MQTT 5 code 132). */
export function isUnsupportedProtocol(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 1 || code === 132;
}

/**
 * Turns what mqtt.js or Node's TLS gave for a failed connection into a `BillingError` whose code
 * names the cause; the original stays in `cause`. The message never holds credentials.
 */
export function toBillingError(err: unknown, where: string): BillingError {
  if (err instanceof BillingError) return err;
  const e = err as { code?: unknown; message?: unknown } | null;
  const code = e?.code;
  const detail = typeof e?.message === "string" ? e.message : String(err);
  if (typeof code === "number") {
    if (NOT_AUTHORIZED.has(code)) {
      return new BillingError("NOT_AUTHORIZED", `${where} refused the credentials: ${detail}`, {
        cause: err,
      });
    }
    return new BillingError("PROTOCOL", `${where} refused the connection: ${detail}`, {
      cause: err,
    });
  }
  if (typeof code === "string") {
    if (UNREACHABLE.has(code)) {
      return new BillingError("UNREACHABLE", `${where} is unreachable: ${detail}`, { cause: err });
    }
    if (
      code === "EPROTO" ||
      /CERT|SSL|TLS|SIGNATURE|ISSUER|VERIFY|SELF_SIGNED|ALTNAME/.test(code)
    ) {
      return new BillingError("TLS", `TLS with ${where} failed: ${detail}`, { cause: err });
    }
  }
  if (detail === "TLS not authorized") {
    return new BillingError("TLS", `TLS with ${where} failed: ${detail}`, { cause: err });
  }
  return new BillingError("UNREACHABLE", `${where}: ${detail}`, { cause: err });
}
