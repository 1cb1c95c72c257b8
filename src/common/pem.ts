/**
 * Whether `value` is PEM text ("-----BEGIN …"), the form every certificate and key option takes:
 * a path given by mistake is the usual other thing, and fails later in a misleading way.
 */
export function isPemText(value: unknown): boolean {
  const text = Buffer.isBuffer(value) ? value.toString("latin1") : value;
  return typeof text === "string" && text.includes("-----BEGIN ");
}
