// Large key-update payloads for the event-loop tests and key-update-bench.ts: forgeries that cost
// a field walk per entry if anything reads them before the signature, and genuine snapshots.

import { type KeyObject, sign } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  KeyState,
  KeyStatusSchema,
  KeyUpdateSchema,
  SignedKeyUpdateSchema,
} from "../../gen/billing/v1/usage_pb.js";
import { hashApiKey } from "../../src/common/api-key-hash.js";
import { signKeyUpdate } from "../../src/keys/signed-key-update.js";

/** `field` as a length-delimited record holding `bytes`. */
function lengthDelimited(field: number, bytes: Uint8Array): Buffer {
  const head: number[] = [(field << 3) | 2];
  for (let n = bytes.length; ; n >>>= 7) {
    if (n < 0x80) {
      head.push(n);
      break;
    }
    head.push((n & 0x7f) | 0x80);
  }
  return Buffer.concat([Buffer.from(head), bytes]);
}

/**
 * A forged update: `n` empty key entries (2 bytes each), a version and an audience, under a
 * signature of zeros by `signer`.
 */
export function forgedKeyEntries(
  n: number,
  version: bigint,
  audience: string,
  signer: string,
): Buffer {
  const tail = toBinary(KeyUpdateSchema, create(KeyUpdateSchema, { version, audience }));
  const keyUpdate = Buffer.alloc(n * 2 + tail.length);
  for (let i = 0; i < n; i++) keyUpdate[2 * i] = 0x0a;
  keyUpdate.set(tail, n * 2);
  const head = toBinary(
    SignedKeyUpdateSchema,
    create(SignedKeyUpdateSchema, { signature: new Uint8Array(64), signer }),
  );
  return Buffer.concat([head, lengthDelimited(1, keyUpdate)]);
}

/** A forged update whose own fields come after `n` unknown ones (field 15, varint 0: 2 bytes). */
export function forgedOuterFields(n: number, version: bigint, signer: string): Buffer {
  const junk = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) junk[2 * i] = 0x78;
  const real = toBinary(
    SignedKeyUpdateSchema,
    create(SignedKeyUpdateSchema, {
      keyUpdate: toBinary(KeyUpdateSchema, create(KeyUpdateSchema, { version })),
      signature: new Uint8Array(64),
      signer,
    }),
  );
  return Buffer.concat([junk, real]);
}

/** The raw API key of entry `i` of `bigSnapshot`. */
export const bigKey = (prefix: string, i: number) => `${prefix}-${i}`;

/**
 * A genuine signed snapshot of `n` keys `bigKey(prefix, i)`, all ACTIVE with `appId` (or a
 * thousand apps), sent at `sentAtMs` (now).
 */
export function bigSnapshot(
  n: number,
  init: {
    version: bigint;
    audience: string;
    prefix?: string;
    appId?: string;
    sentAtMs?: number;
    signer: { name: string; privateKey: KeyObject | string };
  },
): Uint8Array {
  const prefix = init.prefix ?? "big";
  const keys = Array.from({ length: n }, (_, i) =>
    create(KeyStatusSchema, {
      apiKeySha256: hashApiKey(bigKey(prefix, i)),
      appId: init.appId ?? `app-${i % 1000}`,
      state: KeyState.ACTIVE,
    }),
  );
  const u = create(KeyUpdateSchema, {
    snapshot: true,
    version: init.version,
    audience: init.audience,
    sentAt: timestampFromMs(init.sentAtMs ?? Date.now()),
    keys,
  });
  return signKeyUpdate(u, init.signer.privateKey, init.signer.name);
}

/**
 * A genuinely signed snapshot of one key (`key`, ACTIVE, app "a", one rate limit) padded with
 * `n` unknown fields (field 15, varint 0: 2 bytes each): after its fields (`where` "rest") or
 * inside its key entry ("entry"). Signed as bytes, as a backend in another language might.
 */
export function paddedSignedUpdate(
  n: number,
  where: "rest" | "entry",
  init: {
    key: string;
    version: bigint;
    audience: string;
    signer: { name: string; privateKey: KeyObject };
  },
): Uint8Array {
  const junk = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) junk[2 * i] = 0x78;
  const entry = toBinary(
    KeyStatusSchema,
    create(KeyStatusSchema, {
      apiKeySha256: hashApiKey(init.key),
      appId: "a",
      state: KeyState.ACTIVE,
      rateLimits: [{ limit: 5n, windowSeconds: 60 }],
    }),
  );
  const head = toBinary(
    KeyUpdateSchema,
    create(KeyUpdateSchema, {
      snapshot: true,
      version: init.version,
      audience: init.audience,
      sentAt: timestampFromMs(Date.now()),
    }),
  );
  const keyUpdate =
    where === "rest"
      ? Buffer.concat([lengthDelimited(1, entry), head, junk])
      : Buffer.concat([lengthDelimited(1, Buffer.concat([entry, junk])), head]);
  const signature = sign(null, keyUpdate, init.signer.privateKey);
  return toBinary(
    SignedKeyUpdateSchema,
    create(SignedKeyUpdateSchema, { keyUpdate, signature, signer: init.signer.name }),
  );
}
