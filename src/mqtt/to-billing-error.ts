import { BillingError } from "../billing-error.js";
import { UNREACHABLE_CODES } from "../common/network-errors.js";
import { type BrokerSettings, brokerName } from "./broker-settings.js";
import { caFileOf } from "./ca-files.js";

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

/**
 * Certificate verification failures that mean "the broker's chain does not lead to a CA you
 * trust": with a `ca` given, that `ca` did not sign the broker's certificate. OpenSSL words them
 * after the chain the broker sent ("self-signed certificate in certificate chain" when it sent
 * its CA along, "unable to verify the first certificate" when it sent only its own).
 */
const UNTRUSTED_CHAIN: ReadonlySet<string> = new Set([
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
]);

/** True for a TLS error that says the broker's certificate chain leads to no trusted CA. */
export function isUntrustedChain(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && UNTRUSTED_CHAIN.has(code);
}

/** What the connection was configured with, for hints about likely mistakes. */
export interface ErrorHints {
  /** TLS was on. */
  tls: boolean;
  /** A `ca` was given (so a verification failure is not about the system CAs). */
  ca: boolean;
  /** The file that `ca` was read from, when known (the CLI's --ca). */
  caFile?: string | undefined;
  /** `host:port` of the broker, for the `billing-sdk doctor` line of a hint. */
  broker?: string | undefined;
  /** Suggest `billing-sdk doctor` (not in doctor's own output). Default: true. */
  suggestDoctor?: boolean | undefined;
  /** A user name was given without a password (an unset environment variable, usually). */
  noPassword?: boolean;
}

/** The hints of a connection's settings. */
export function errorHints(
  s: Pick<BrokerSettings, "tls" | "ca" | "username" | "password" | "brokerHost" | "brokerPort">,
): ErrorHints {
  return {
    tls: s.tls,
    ca: s.ca !== undefined,
    caFile: caFileOf(s.ca),
    broker: brokerName(s),
    noPassword: s.username !== undefined && s.password === undefined,
  };
}

/**
 * The message of a TLS failure because the broker's certificate is not signed by the `ca` given:
 * names the option, the file when known, and how to see who did sign it.
 */
function wrongCa(where: string, detail: string, hints: ErrorHints): string {
  const file = hints.caFile === undefined ? "" : ` (read from ${hints.caFile})`;
  const doctor =
    hints.suggestDoctor === false
      ? ""
      : `; \`billing-sdk doctor --broker mqtts://${hints.broker ?? "HOST:PORT"} --ca ${
          hints.caFile ?? "FILE"
        }\` shows who issued it`;
  return `TLS with ${where} failed: the broker's certificate is not signed by the CA given in \`ca\`${file} (${detail}): pass the CA that issued the broker's certificate${doctor}`;
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
      if (hints?.ca === true && UNTRUSTED_CHAIN.has(code)) {
        return new BillingError("TLS", wrongCa(where, detail, hints), { cause: err });
      }
      const hint =
        hints?.ca === false && UNTRUSTED_CHAIN.has(code)
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
