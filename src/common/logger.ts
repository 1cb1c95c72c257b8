/** Severity of a log line. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/**
 * The logging hook. Fields never hold a raw API key or a password (key fingerprints at most).
 * Default: warnings and errors to `console.error`, prefixed `[billing-sdk]`.
 */
export type BillingLogger = (
  level: LogLevel,
  message: string,
  fields?: Readonly<Record<string, unknown>>,
) => void;

export const consoleLogger: BillingLogger = (level, message, fields) => {
  if (level === "warn" || level === "error") {
    console.error(`[billing-sdk] ${level}: ${message}`, fields ?? "");
  }
};
