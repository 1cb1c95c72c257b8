/** Severity of a log line. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/**
 * The logging hook. Fields never hold a raw API key or a password (key fingerprints at most).
 * Default: info, warnings and errors to `console.error`, prefixed `[billing-sdk]` (connection
 * changes are info: "connected", "connection lost; reconnecting" is a warning, "reconnected" info).
 */
export type BillingLogger = (
  level: LogLevel,
  message: string,
  fields?: Readonly<Record<string, unknown>>,
) => void;

export const consoleLogger: BillingLogger = (level, message, fields) => {
  if (level !== "debug") {
    console.error(`[billing-sdk] ${level}: ${message}`, fields ?? "");
  }
};
