import { BillingError } from "../billing-error.js";
import { UNREACHABLE_CODES } from "../common/network-errors.js";

const UNREACHABLE = new Set([
  ...UNREACHABLE_CODES,
  "57P01", // admin shutdown (the server is stopping)
  "57P02", // crash shutdown
  "57P03", // cannot connect now (starting up)
]);

/**
 * A PostgreSQL (node-postgres or PGlite) error as a `BillingError` naming the cause: credentials
 * refused → `NOT_AUTHORIZED`, no server → `UNREACHABLE`, TLS → `TLS`, anything else → `STORE`.
 * The original stays in `cause`; the message never holds the password.
 */
export function toStoreError(err: unknown, where: string, what: string): BillingError {
  if (err instanceof BillingError) return err;
  const code = String((err as { code?: unknown } | null)?.code ?? "");
  const detail = err instanceof Error ? err.message : String(err);
  const text = `${where}: ${what}: ${detail}`;
  if (code === "28P01" || code === "28000") {
    return new BillingError("NOT_AUTHORIZED", text, { cause: err });
  }
  if (UNREACHABLE.has(code) || /Connection terminated|connection timeout/i.test(detail)) {
    return new BillingError("UNREACHABLE", text, { cause: err });
  }
  if (
    /CERT|SSL|TLS|SELF_SIGNED|ALTNAME|ISSUER|VERIFY/.test(code) ||
    /does not support SSL/.test(detail)
  ) {
    return new BillingError("TLS", text, { cause: err });
  }
  return new BillingError("STORE", text, { cause: err });
}
