import * as crypto from "node:crypto";

/**
 * The longest API key accepted, in characters (UTF-16 code units): a longer one is refused as
 * invalid before it is hashed (by `requireApiKey()`, `reportUsage` and the key list), so that a
 * caller cannot make every check hash megabytes.
 */
export const MAX_API_KEY_LENGTH = 1024;

// crypto.hash (Node ≥ 20.12) is a one-shot digest, ~4× faster than createHash for short input.
const oneShot = (crypto as { hash?: (alg: string, data: string, enc: "hex") => string }).hash;

/**
 * Lowercase hex SHA-256 of a raw API key: the only form a key takes on the wire or in logs.
 * Nothing is cached: no raw key outlives the call.
 */
export function hashApiKey(apiKey: string): string {
  if (oneShot !== undefined) return oneShot("sha256", apiKey, "hex");
  return crypto.createHash("sha256").update(apiKey, "utf8").digest("hex");
}
