const HEX64 = /^[0-9a-f]{64}$/;

/** Whether `value` is a key fingerprint: 64 lowercase hex characters (a SHA-256). */
export function isSha256Hex(value: unknown): value is string {
  return typeof value === "string" && HEX64.test(value);
}
