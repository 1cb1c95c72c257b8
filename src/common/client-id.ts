import { randomBytes } from "node:crypto";
import { hostname } from "node:os";

/**
 * A default MQTT client id: `<role>-<hostname>-<8 hex>`, unique per process start, at most 128
 * characters (long host names are cut).
 */
export function defaultClientId(role: string): string {
  return `${role}-${hostname().slice(0, 100)}-${randomBytes(4).toString("hex")}`;
}
