import { BillingError } from "../billing-error.js";
import { UNREACHABLE_CODES } from "../common/network-errors.js";

// MQTT reason codes that mean "you may not": 3.1.1 CONNACK 4 (bad user name or password) and
// 5 (not authorized); MQTT 5 134 (bad user name or password), 135 (not authorized), 138 (banned).
const NOT_AUTHORIZED = new Set([4, 5, 134, 135, 138]);
const UNREACHABLE = UNREACHABLE_CODES;
export const CLOSED_EARLY = "connection closed before the broker answered CONNECT";

/** True for a CONNACK that refuses the protocol version (3.1.1 code 1, MQTT 5 code 132). */
export function isUnsupportedProtocol(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 1 || code === 132;
}

/** What the connection was configured with, for hints about likely mistakes. */
export interface ErrorHints {
  /** TLS was on. */
  tls: boolean;
  /** A `ca` was given (so a verification failure is not about the system CAs). */
  ca: boolean;
  /** A user name was given without a password (an unset environment variable, usually). */
  noPassword?: boolean;
}

/** The hints of a connection's settings. */
export function errorHints(s: {
  tls: boolean;
  ca: unknown;
  username: string | undefined;
  password: string | undefined;
}): ErrorHints {
  return {
    tls: s.tls,
    ca: s.ca !== undefined,
    noPassword: s.username !== undefined && s.password === undefined,
  };
}

/**
 * Turns what mqtt.js or Node's TLS gave for a failed connection into a `BillingError` whose code
 * names the cause, with a hint at the likely mistake; the original stays in `cause`. The message
 * never holds credentials.
 */
export function toBillingError(err: unknown, where: string, hints?: ErrorHints): BillingError {
  if (err instanceof BillingError) return err;
  const e = err as { code?: unknown; message?: unknown } | null;
  const code = e?.code;
  const detail = typeof e?.message === "string" ? e.message : String(err);
  if (typeof code === "number") {
    if (NOT_AUTHORIZED.has(code)) {
      const hint = hints?.noPassword
        ? " (a user name but no password was given: is the variable it comes from, e.g. BILLING_MQTT_PASSWORD, set?)"
        : "";
      return new BillingError(
        "NOT_AUTHORIZED",
        `${where} refused the credentials: ${detail}${hint}`,
        { cause: err },
      );
    }
    return new BillingError("PROTOCOL", `${where} refused the connection: ${detail}`, {
      cause: err,
    });
  }
  if (typeof code === "string") {
    if (UNREACHABLE.has(code)) {
      // A TLS listener resets a plain MQTT CONNECT.
      const hint =
        hints?.tls === false && code === "ECONNRESET"
          ? " (the port may expect TLS: use mqtts:// or tls: true)"
          : "";
      return new BillingError("UNREACHABLE", `${where} is unreachable: ${detail}${hint}`, {
        cause: err,
      });
    }
    if (
      code === "EPROTO" ||
      /CERT|SSL|TLS|SIGNATURE|ISSUER|VERIFY|SELF_SIGNED|ALTNAME/.test(code)
    ) {
      const hint =
        hints?.ca === false && /SELF_SIGNED|ISSUER|VERIFY|CHAIN/.test(code)
          ? ' (verified against the system CAs: pass your broker\'s CA: the `ca` option, its PEM text readFileSync("ca.pem", "utf8"); with the CLI, --ca FILE)'
          : "";
      return new BillingError("TLS", `TLS with ${where} failed: ${detail}${hint}`, { cause: err });
    }
  }
  if (detail === "TLS not authorized") {
    return new BillingError("TLS", `TLS with ${where} failed: ${detail}`, { cause: err });
  }
  if (hints?.tls === false && detail === CLOSED_EARLY) {
    return new BillingError(
      "UNREACHABLE",
      `${where}: ${detail} (the port may expect TLS: use mqtts:// or tls: true)`,
      { cause: err },
    );
  }
  return new BillingError("UNREACHABLE", `${where}: ${detail}`, { cause: err });
}
