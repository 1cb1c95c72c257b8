const BEARER = /^bearer\s+(.+)$/i;

/**
 * Every distinct key a request carries, from the headers `names` (as is) and, with `bearer`,
 * from `authorization: Bearer <key>`. Repeated headers arrive joined with ", ", so values are
 * split on commas: a key cannot contain one.
 */
export function apiKeysOf(header: Headers, names: readonly string[], bearer: boolean): Set<string> {
  const keys = new Set<string>();
  for (const name of names) {
    const value = header.get(name);
    if (value !== null) {
      for (const v of value.split(",")) {
        const key = v.trim();
        if (key !== "") keys.add(key);
      }
    }
  }
  if (bearer) {
    const auth = header.get("authorization");
    if (auth !== null) {
      for (const part of auth.split(",")) {
        const m = BEARER.exec(part.trim());
        if (m?.[1] !== undefined) keys.add(m[1].trim());
      }
    }
  }
  return keys;
}
