import {
  createPrivateKey,
  createPublicKey,
  KeyObject,
  sign as signBytes,
  verify as verifyBytes,
} from "node:crypto";
import { clone, create, isMessage, toBinary } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import {
  type KeyUpdate,
  KeyUpdateSchema,
  SignedKeyUpdateSchema,
} from "../../gen/billing/v1/usage_pb.js";
import { BillingError } from "../billing-error.js";
import { isPemText } from "../common/pem.js";
import { nameProblem } from "../common/text.js";
import { ed25519PublicKeyProblem } from "./ed25519-point.js";
import { rawEd25519PublicKey } from "./key-fingerprint.js";
import { layoutOf, MAX_KEY_ENTRY_BYTES, oversizedEntry } from "./key-update-layout.js";
import { keyUpdateProblem } from "./key-update-problem.js";

/** The length of an Ed25519 signature (RFC 8032). */
const SIGNATURE_BYTES = 64;

const publicNotPrivate = (field: string) =>
  `is a public key; ${field} needs the private key that keys keygen wrote (key-update-private.pem)`;

function ed25519Key(field: string, key: unknown, type: "public" | "private"): KeyObject {
  let k: KeyObject;
  if (key instanceof KeyObject) {
    k = key;
  } else if (typeof key === "string" || Buffer.isBuffer(key)) {
    const text = Buffer.isBuffer(key) ? key.toString("latin1") : key;
    if (!isPemText(text)) {
      throw BillingError.invalid(
        field,
        `must be an Ed25519 ${type} key as PEM text ("-----BEGIN ..."), not a path: pass the file's contents`,
      );
    }
    if (
      type === "private" &&
      !text.includes("PRIVATE KEY-----") &&
      text.includes("PUBLIC KEY-----")
    ) {
      throw BillingError.invalid(field, publicNotPrivate(field));
    }
    if (type === "public" && text.includes("PRIVATE KEY-----")) {
      throw BillingError.invalid(
        field,
        "is a private key: give the services the public key only (the private one stays with the billing backend)",
      );
    }
    try {
      k = type === "public" ? createPublicKey(text) : createPrivateKey(text);
    } catch (err) {
      throw BillingError.invalid(field, `is not a readable PEM key: ${(err as Error).message}`);
    }
  } else {
    throw BillingError.invalid(field, `must be PEM text or a node:crypto KeyObject`);
  }
  if (type === "private" && k.type === "public" && k.asymmetricKeyType === "ed25519") {
    throw BillingError.invalid(field, publicNotPrivate(field));
  }
  if (k.type !== type || k.asymmetricKeyType !== "ed25519") {
    throw BillingError.invalid(
      field,
      `must be an Ed25519 ${type} key, not a ${k.asymmetricKeyType ?? "secret"} ${k.type} key`,
    );
  }
  return k;
}

/**
 * An Ed25519 public key from PEM text or a KeyObject; throws `INVALID_ARGUMENT` naming `field`,
 * also for a key under which signatures can be forged (small order, non-canonical: see
 * `ed25519PublicKeyProblem`).
 */
export function ed25519PublicKey(field: string, key: unknown): KeyObject {
  const k = ed25519Key(field, key, "public");
  const problem = ed25519PublicKeyProblem(rawEd25519PublicKey(k));
  if (problem !== undefined) {
    throw BillingError.invalid(
      field,
      `${problem}; refused: give the public key billing-sdk keys keygen wrote (key-update-public.pem)`,
    );
  }
  return k;
}

/** An Ed25519 private key from PEM text or a KeyObject; throws `INVALID_ARGUMENT` naming `field`. */
export function ed25519PrivateKey(field: string, key: unknown): KeyObject {
  return ed25519Key(field, key, "private");
}

/** Why `signer` cannot name a key update signer, or undefined when it can. */
export function signerProblem(signer: unknown): string | undefined {
  if (typeof signer !== "string" || signer === "" || signer.length > 128) {
    return "must be a name of 1..128 characters";
  }
  return nameProblem(signer);
}

/**
 * Signs a key update for `<prefix>/keys/update`: returns the bytes of a `SignedKeyUpdate` whose
 * `key_update` is `update` encoded, `signature` the Ed25519 signature of exactly those bytes, and
 * `signer` the name the services know the public key by (`keyUpdatePublicKeys`). `update` must
 * carry a `version` (> 0) and keys as SHA-256 fingerprints, each key at most
 * `MAX_KEY_ENTRY_BYTES` (64 KB) encoded; an unset `sentAt` is set to now. Throws
 * `INVALID_ARGUMENT` naming what is wrong.
 */
export function signKeyUpdate(
  update: KeyUpdate,
  privateKey: string | KeyObject,
  signer: string,
): Uint8Array {
  if (!isMessage(update, KeyUpdateSchema)) {
    throw BillingError.invalid("update", "must be a KeyUpdate made with create(KeyUpdateSchema)");
  }
  const problem = signerProblem(signer);
  if (problem !== undefined) throw BillingError.invalid("signer", problem);
  const key = ed25519PrivateKey("privateKey", privateKey);
  let u = update;
  if (u.sentAt === undefined) {
    u = clone(KeyUpdateSchema, update); // the caller's message is left as it was
    u.sentAt = timestampNow();
  }
  const invalid = keyUpdateProblem(u);
  if (invalid !== undefined) throw BillingError.invalid(`update.${invalid.field}`, invalid.problem);
  const keyUpdate = toBinary(KeyUpdateSchema, u);
  const big = oversizedEntry(layoutOf(keyUpdate, Number.MAX_SAFE_INTEGER).entries);
  if (big >= 0) {
    throw BillingError.invalid(
      `update.keys[${big}]`,
      `encodes to more than ${MAX_KEY_ENTRY_BYTES} bytes (MAX_KEY_ENTRY_BYTES), which clients refuse`,
    );
  }
  const signature = signBytes(null, keyUpdate, key);
  return toBinary(
    SignedKeyUpdateSchema,
    create(SignedKeyUpdateSchema, { keyUpdate, signature, signer }),
  );
}

/** Whether `signature` is a valid Ed25519 signature of `data` by `publicKey`. */
export function verifySignature(
  data: Uint8Array,
  signature: Uint8Array,
  publicKey: KeyObject,
): boolean {
  if (signature.length !== SIGNATURE_BYTES) return false;
  try {
    return verifyBytes(null, data, publicKey, signature);
  } catch {
    return false;
  }
}

/** `keyUpdatePublicKeys` as Ed25519 public keys by signer name; throws naming the bad entry. */
export function publicKeysOf(value: unknown): Map<string, KeyObject> {
  const keys = new Map<string, KeyObject>();
  if (value === undefined) return keys;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw BillingError.invalid(
      "keyUpdatePublicKeys",
      'must be an object: { "<signer>": "<Ed25519 public key PEM>" }',
    );
  }
  for (const [signer, key] of Object.entries(value)) {
    const problem = signerProblem(signer);
    if (problem !== undefined) {
      throw BillingError.invalid(
        `keyUpdatePublicKeys[${JSON.stringify(signer)}]`,
        `the signer name ${problem}`,
      );
    }
    keys.set(signer, ed25519PublicKey(`keyUpdatePublicKeys.${signer}`, key));
  }
  return keys;
}
