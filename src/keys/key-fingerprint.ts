import { createHash, type KeyObject } from "node:crypto";

/**
 * The 32 raw bytes of an Ed25519 public key (RFC 8032 encoding), from a public or private
 * KeyObject (a private key's JWK carries its public half as `x`).
 */
export function rawEd25519PublicKey(key: KeyObject): Buffer {
  const x = key.export({ format: "jwk" }).x;
  if (x === undefined) throw new TypeError("not an Ed25519 key");
  return Buffer.from(x, "base64url");
}

/**
 * The fingerprint of an Ed25519 public key: `sha256:` and the lowercase hex SHA-256 of its 32 raw
 * bytes. What `keys keygen` and `keys push` print and what a client logs for the keys it pins, so
 * that an operator can tell which key signed what without comparing PEM text.
 */
export function publicKeyFingerprint(key: KeyObject): string {
  return `sha256:${createHash("sha256").update(rawEd25519PublicKey(key)).digest("hex")}`;
}
