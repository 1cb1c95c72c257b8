/**
 * The closed set of reasons a billing-sdk call can fail for.
 *
 * - `INVALID_ARGUMENT`: bad input to `reportUsage` or to a constructor; nothing was changed.
 * - `ALREADY_INITIALIZED`: a second `BillingClient` with different options in one process.
 * - `NOT_INITIALIZED`: module-level `reportUsage` called before any `BillingClient` was made.
 * - `QUEUE_FULL`: `maxQueued` records or `maxQueuedBytes` bytes are waiting for the broker; the
 *   record was not accepted.
 * - `CLOSED`: the client was closed.
 * - `TIMEOUT`: `connect`, `flush` or `close` did not finish in time.
 * - `NOT_AUTHORIZED`: the broker refused the credentials or the client id.
 * - `TLS`: the TLS handshake failed (unknown CA, wrong host name, protocol version...).
 * - `UNREACHABLE`: the broker could not be reached (DNS, TCP refused/reset, closed early).
 * - `PROTOCOL`: the broker refused the connection for another MQTT reason.
 * - `SPOOL`: the durable spool could not be opened or written.
 * - `STORE`: the usage store (PostgreSQL, `billing-sdk/postgres`) could not be opened, migrated
 *   or written.
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
  | "SPOOL"
  | "STORE";

const CODES: ReadonlySet<string> = new Set<BillingErrorCode>([
  "INVALID_ARGUMENT",
  "ALREADY_INITIALIZED",
  "NOT_INITIALIZED",
  "QUEUE_FULL",
  "CLOSED",
  "TIMEOUT",
  "NOT_AUTHORIZED",
  "TLS",
  "UNREACHABLE",
  "PROTOCOL",
  "SPOOL",
  "STORE",
]);

/**
 * The one error class billing-sdk throws or rejects with, in the manner of connect-es's
 * `ConnectError`: `code` says why, `rawMessage` is the message without the `[CODE]` prefix, and
 * `cause` keeps the underlying error (an mqtt.js or TLS error, for example) when there is one.
 * `instanceof BillingError` holds across two copies of the package in one process.
 */
export class BillingError extends Error {
  /** Always `"BillingError"`. */
  override name = "BillingError";
  /** Why the call failed. */
  readonly code: BillingErrorCode;
  /** The message without the `[CODE]` prefix. */
  readonly rawMessage: string;
  /** For `INVALID_ARGUMENT`: the offending field, e.g. `usage` or `metadata.tags[2]`. */
  readonly field: string | undefined;

  constructor(
    code: BillingErrorCode,
    message: string,
    options?: { cause?: unknown; field?: string | undefined },
  ) {
    super(`[${code}] ${message}`, options?.cause === undefined ? {} : { cause: options.cause });
    // Keep the prototype when a subclass or a transpiler loses it.
    Object.setPrototypeOf(this, new.target.prototype);
    this.code = code;
    this.rawMessage = message;
    this.field = options?.field;
  }

  /** Shorthand for an `INVALID_ARGUMENT` error about one field. */
  static invalid(field: string, message: string): BillingError {
    return new BillingError("INVALID_ARGUMENT", `${field}: ${message}`, { field });
  }

  /**
   * Any thrown value as a `BillingError`: a `BillingError` (of any copy of the package) is
   * returned as is; anything else becomes one with `code` (default `PROTOCOL`) and the original
   * in `cause`.
   */
  static from(reason: unknown, code: BillingErrorCode = "PROTOCOL"): BillingError {
    if (reason instanceof BillingError) return reason;
    const message = reason instanceof Error ? reason.message : String(reason);
    return new BillingError(code, message, { cause: reason });
  }

  /** `instanceof` that also recognises a `BillingError` made by another copy of the package. */
  static override [Symbol.hasInstance](v: unknown): boolean {
    if (!(v instanceof Error)) return false;
    if (Object.getPrototypeOf(v) === BillingError.prototype) return true;
    const e = v as Partial<BillingError>;
    return (
      e.name === "BillingError" &&
      typeof e.code === "string" &&
      CODES.has(e.code) &&
      typeof e.rawMessage === "string"
    );
  }
}
