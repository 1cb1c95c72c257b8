/** `U+XXXX` for a UTF-16 code unit. */
const codePoint = (c: number) => `U+${c.toString(16).toUpperCase().padStart(4, "0")}`;

/**
 * Why no request can bring `key` to `requireApiKey` as it is, so a key list entry for it could never
 * match, or undefined when one can. Never quotes the key. What a key can hold follows from how it
 * travels (checked over HTTP/1.1 and HTTP/2, Connect and gRPC): header values are bytes, and
 * servers refuse (HTTP/1.1: 400) or drop (HTTP/2) a value with a control character other than a
 * tab; Node reads each byte as one character (Latin-1), so nothing above U+00FF arrives; a value
 * loses its leading and trailing spaces and tabs; and `apiKeysOf` splits values on commas and
 * trims each key (JavaScript's `trim`, which also takes U+00A0). A tab inside a key, and
 * U+0080–U+00FF, do arrive (from a client that sends the key's Latin-1 bytes).
 */
export function unmatchableApiKeyProblem(key: string): string | undefined {
  if (key === "") return "is empty";
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    const at = `at character ${i + 1} of ${key.length}`;
    if (c === 0x2c) {
      return `holds a comma ${at}: the interceptor splits header values on commas, so no request can carry this key`;
    }
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) {
      return `holds the control character ${codePoint(c)} ${at}: HTTP headers cannot carry it, so no request can carry this key`;
    }
    if (c > 0xff) {
      return `holds ${codePoint(c)} ${at}: HTTP headers carry bytes, read as one character each (Latin-1, up to U+00FF), so no request can carry this key`;
    }
  }
  if (key.trim() !== key) {
    const leading = key.trimStart() !== key;
    const c = key.charCodeAt(leading ? 0 : key.length - 1);
    return `${leading ? "starts" : "ends"} with whitespace (${codePoint(c)}): header values and keys lose leading and trailing whitespace, so no request can carry this key as it is`;
  }
  return undefined;
}
