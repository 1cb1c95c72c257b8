/**
 * The closed set of reasons a billing-sdk call can fail for.
 *
 * - `INVALID_ARGUMENT`: bad input to `reportUsage` or to the constructor; nothing was changed.
 * - `ALREADY_INITIALIZED`: a second `BillingClient` with different options in one process.
 * - `NOT_INITIALIZED`: module-level `reportUsage` called before any `BillingClient` was made.
 * - `QUEUE_FULL`: `maxQueued` records are waiting for the broker; the record was not accepted.
 * - `CLOSED`: the client was closed.
 * - `TIMEOUT`: `connect`, `flush` or `close` did not finish in time.
 * - `NOT_AUTHORIZED`: the broker refused the credentials or the client id.
 * - `TLS`: the TLS handshake failed (unknown CA, wrong host name, protocol version...).
 * - `UNREACHABLE`: the broker could not be reached (DNS, TCP refused/reset, closed early).
 * - `PROTOCOL`: the broker refused the connection for another MQTT reason.
 * - `SPOOL`: the durable spool could not be opened or written.
 */
export type BillingErrorCode =
  | "INVALID_ARGUMENT"
  | "ALREADY_INITIALIZED"
  | "NOT_INITIALIZED"
  | "QUEUE_FULL"
  | "CLOSED"
  | "TIMEOUT"
  | "NOT_AUTHORIZED"
  | "TLS"
  | "UNREACHABLE"
  | "PROTOCOL"
  | "SPOOL";

/**
 * The one error class billing-sdk throws or rejects with. `code` says why; `cause` keeps the
 * underlying error (an mqtt.js or TLS error, for example) when there is one.
 */
export class BillingError extends Error {
  override name = "BillingError";
  /** Why the call failed. */
  readonly code: BillingErrorCode;
  /** For `INVALID_ARGUMENT`: the offending field, e.g. `usage` or `metadata.tags[2]`. */
  readonly field: string | undefined;

  constructor(
    code: BillingErrorCode,
    message: string,
    options?: { cause?: unknown; field?: string },
  ) {
    super(`[${code}] ${message}`, options?.cause === undefined ? {} : { cause: options.cause });
    this.code = code;
    this.field = options?.field;
  }

  /** Shorthand for an `INVALID_ARGUMENT` error about one field. */
  static invalid(field: string, message: string): BillingError {
    return new BillingError("INVALID_ARGUMENT", `${field}: ${message}`, { field });
  }
}
