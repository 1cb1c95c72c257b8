import { createPublicKey, generateKeyPairSync, type KeyObject, verify } from "node:crypto";
import { describe, expect, it } from "vitest";
import { BillingClient } from "../../../src/index.js";
import { ed25519PublicKeyProblem } from "../../../src/keys/ed25519-point.js";
import { rawEd25519PublicKey } from "../../../src/keys/key-fingerprint.js";
import { ed25519PublicKey } from "../../../src/keys/signed-key-update.js";
import { testPublicKeys } from "../../helpers/fixtures.js";

// An Ed25519 public key of small order ([8]A = identity) lets anyone forge signatures: OpenSSL
// verifies the fixed signature R = identity, S = 0 under the identity key for every message, and
// under the other small-order keys for many. Such keys, and encodings that are not canonical, are
// refused where `keyUpdatePublicKeys` is read.

const P = 2n ** 255n - 19n;
const hex = (h: string) => Buffer.from(h, "hex");
/** The 32-byte little-endian encoding of y, with the sign bit of x. */
const encode = (y: bigint, sign: 0 | 1) => {
  const b = Buffer.alloc(32);
  for (let i = 0, v = y; i < 32; i++, v >>= 8n) b[i] = Number(v & 0xffn);
  b[31] = ((b[31] as number) & 0x7f) | (sign << 7);
  return b;
};

/**
 * The eight points of small order, canonically encoded (libsodium's blocklist, "Taming the many
 * EdDSAs", Chalkias et al. 2020, table of small-order points).
 */
const SMALL_ORDER: Array<[string, Buffer]> = [
  ["the identity (order 1)", encode(1n, 0)],
  ["(0, -1) (order 2)", encode(P - 1n, 0)],
  ["the all-zero key (order 4)", encode(0n, 0)],
  ["(-sqrt(-1), 0) (order 4)", encode(0n, 1)],
  ["order 8 (a)", hex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")],
  ["order 8 (b)", hex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85")],
  ["order 8 (c)", hex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")],
  ["order 8 (d)", hex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa")],
];

/** Every encoding with y ≥ p (y = p … 2^255 - 1, both signs): none is canonical. */
const NON_CANONICAL: Array<[string, Buffer]> = Array.from({ length: 19 }, (_, i) => [
  [`y = p + ${i}`, encode(P + BigInt(i), 0)] as [string, Buffer],
  [`y = p + ${i}, sign bit set`, encode(P + BigInt(i), 1)] as [string, Buffer],
]).flat();

const keyOf = (raw: Buffer): KeyObject =>
  createPublicKey({
    key: { kty: "OKP", crv: "Ed25519", x: raw.toString("base64url") },
    format: "jwk",
  });
const pemOf = (raw: Buffer) => keyOf(raw).export({ type: "spki", format: "pem" }) as string;
/** The forgery: R = the identity's encoding, S = 0. */
const FORGERY = Buffer.concat([encode(1n, 0), Buffer.alloc(32)]);

describe("ed25519PublicKeyProblem", () => {
  it.each(SMALL_ORDER)("refuses %s as small-order", (_, raw) => {
    expect(ed25519PublicKeyProblem(raw)).toMatch(/small-order/);
  });

  it("the small-order keys are the dangerous ones: OpenSSL takes the forgery under each", () => {
    for (const [name, raw] of SMALL_ORDER) {
      const key = keyOf(raw); // OpenSSL imports every one of them
      const verified = Array.from({ length: 64 }, (_, i) =>
        verify(null, Buffer.from(`update ${i}`), key, FORGERY),
      ).filter(Boolean).length;
      expect(verified, name).toBeGreaterThan(0);
    }
    expect(verify(null, Buffer.from("anything"), keyOf(encode(1n, 0)), FORGERY)).toBe(true);
  });

  it.each(NON_CANONICAL)("refuses %s as non-canonical", (_, raw) => {
    expect(ed25519PublicKeyProblem(raw)).toMatch(/non-canonical encoding \(y ≥ p\)/);
  });

  it("refuses x = 0 with the sign bit set (a second encoding of (0, 1) and (0, -1))", () => {
    expect(ed25519PublicKeyProblem(encode(1n, 1))).toMatch(/non-canonical.*sign bit/);
    expect(ed25519PublicKeyProblem(encode(P - 1n, 1))).toMatch(/non-canonical.*sign bit/);
  });

  it("refuses a y with no point on the curve, and a key of the wrong length", () => {
    // y = 2: (y² - 1) / (d·y² + 1) has no square root mod p.
    expect(ed25519PublicKeyProblem(encode(2n, 0))).toBe("is not a point of the curve");
    expect(ed25519PublicKeyProblem(Buffer.alloc(31))).toBe("is not 32 bytes long");
  });

  it("accepts the base point and 500 genuine keys", () => {
    const base = hex("5866666666666666666666666666666666666666666666666666666666666666");
    expect(ed25519PublicKeyProblem(base)).toBeUndefined();
    for (let i = 0; i < 500; i++) {
      const { publicKey } = generateKeyPairSync("ed25519");
      expect(ed25519PublicKeyProblem(rawEd25519PublicKey(publicKey))).toBeUndefined();
    }
  });
});

describe("keyUpdatePublicKeys with a key anyone can sign for", () => {
  const options = (key: string | KeyObject) => ({
    brokerHost: "127.0.0.1",
    brokerPort: 1,
    tls: false,
    logger: () => {},
    keyUpdatePublicKeys: { ...testPublicKeys, "evil-signer": key },
  });

  it.each([...SMALL_ORDER, ...NON_CANONICAL.slice(0, 4)])(
    "%s: new BillingClient throws INVALID_ARGUMENT naming the field and the signer",
    (_, raw) => {
      for (const key of [pemOf(raw), keyOf(raw)]) {
        expect(() => new BillingClient(options(key))).toThrow(
          expect.objectContaining({
            code: "INVALID_ARGUMENT",
            field: "keyUpdatePublicKeys.evil-signer",
            message: expect.stringMatching(
              /keyUpdatePublicKeys\.evil-signer: is a (small-order point|non-canonical encoding)/,
            ),
          }),
        );
      }
    },
  );

  it("a genuine key still passes, as PEM and as a KeyObject", () => {
    const { publicKey } = generateKeyPairSync("ed25519");
    expect(ed25519PublicKey("k", publicKey)).toBe(publicKey);
    const pem = publicKey.export({ type: "spki", format: "pem" }) as string;
    expect(rawEd25519PublicKey(ed25519PublicKey("k", pem))).toEqual(rawEd25519PublicKey(publicKey));
  });
});
