import { createHash } from "node:crypto";

// The same few keys are hashed over and over (every call of a busy client), so a bounded cache
// saves the SHA-256 on the hot paths of reportUsage and the interceptor. It is cleared whole when
// full: cheap, and a burst of distinct keys (an attack with random keys) cannot grow it.
const MAX_CACHED = 4096;
const cache = new Map<string, string>();

/** Lowercase hex SHA-256 of a raw API key: the only form a key takes on the wire or in logs. */
export function hashApiKey(apiKey: string): string {
  let hex = cache.get(apiKey);
  if (hex === undefined) {
    hex = createHash("sha256").update(apiKey, "utf8").digest("hex");
    if (cache.size >= MAX_CACHED) cache.clear();
    cache.set(apiKey, hex);
  }
  return hex;
}
