import type { KeyObject } from "node:crypto";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import {
  KeyStatusSchema,
  KeyUpdateSchema,
  type SignedKeyUpdate,
  SignedKeyUpdateSchema,
} from "../../gen/billing/v1/usage_pb.js";
import { shownText } from "../common/text.js";
import {
  entriesHash,
  type KeyUpdateLayout,
  layoutOf,
  MAX_KEY_ENTRY_BYTES,
  oversizedEntry,
  PlainKeyReader,
} from "./key-update-layout.js";
import { keyStatusProblem, keyUpdateProblem } from "./key-update-problem.js";
import type { Refusal } from "./key-update-refusal.js";
import { verifySignature } from "./signed-key-update.js";

/** A public key a client pins for a signer, and its fingerprint (`publicKeyFingerprint`). */
export interface PinnedKey {
  readonly key: KeyObject;
  readonly fingerprint: string;
}

/** What a key update is checked against (from the client's options). */
export interface KeyUpdateCheckOptions {
  /** The keys that may sign updates, by signer name (`keyUpdatePublicKeys`). */
  readonly signers: ReadonlyMap<string, PinnedKey>;
  /** Also accept unsigned updates; signed ones are still verified. */
  readonly acceptUnsigned: boolean;
  /** The most keys an update may carry (`maxKeys`). */
  readonly maxKeys: number;
  /** The audience an update must name (`keyUpdateAudience`). */
  readonly audience: string;
  /** Also accept an update that names no audience (`acceptUnboundKeyUpdates`). */
  readonly acceptUnbound: boolean;
}

/** What the check learnt of a signed update before reading its keys. */
export interface KeyUpdateHead {
  readonly version: bigint;
  readonly snapshot: boolean;
  /** Its signed `sent_at`, in ms since the epoch. */
  readonly sentAtMs: number;
  /** How many key entries it carries. */
  readonly count: number;
  /**
   * Its known fields other than the keys, encoded again: a `KeyUpdate` without keys (a few dozen
   * bytes; unknown fields are dropped, so nothing the event loop decodes grows with them).
   */
  readonly rest: Uint8Array;
  /**
   * A snapshot's keys as a multiset hash (the same entries in any order hash the same), to tell
   * a snapshot sent again from another one at the same version; undefined for a delta.
   */
  readonly keysHash: string | undefined;
}

/** The key entries of a checked update (see `checkedEntries`). */
export interface CheckedKeys {
  /** `[start, end)` of each entry in the `KeyUpdate` bytes. */
  readonly offsets: Uint32Array;
  /** 1 where an entry must be decoded as a message, 0 where it is a plain key. */
  readonly decoded: Uint8Array;
}

const refuse = (reason: Refusal["reason"], detail: string): Refusal => ({ reason, detail });
const NOT_A_KEY_UPDATE = refuse("undecodable", "its key_update is not a KeyUpdate");

/**
 * One payload from `<prefix>/keys/update`, checked in two steps, the signature before any work
 * that grows with the number of fields: `open` decodes the `SignedKeyUpdate` (its few fields;
 * unknown ones are skipped, not kept), verifies the signature, then reads the signed
 * `KeyUpdate`'s head (version, kind, sent_at, audience, key count); `keys` then checks every key
 * entry, for an update the list will take. Runs in the key-update worker (or inline for small
 * payloads); each refusal has the reason and detail the gate counts and logs.
 */
export class KeyUpdateCheck {
  private constructor(
    /** The signed `KeyUpdate` bytes. */
    readonly bytes: Buffer,
    readonly head: KeyUpdateHead,
    private readonly layout: KeyUpdateLayout,
  ) {}

  /** Checks everything up to the keys; a refusal, or the check to go on with. */
  static open(payload: Uint8Array, o: KeyUpdateCheckOptions): KeyUpdateCheck | Refusal {
    let signed: SignedKeyUpdate;
    try {
      signed = fromBinary(SignedKeyUpdateSchema, payload, { readUnknownFields: false });
    } catch {
      return refuse("undecodable", `${payload.length} bytes that are not a SignedKeyUpdate`);
    }
    const unsigned = signatureRefusal(signed, o);
    if (unsigned !== undefined) return unsigned;
    const u = signed.keyUpdate;
    const bytes = Buffer.from(u.buffer, u.byteOffset, u.byteLength);
    let layout: KeyUpdateLayout;
    let head: ReturnType<typeof headOf>;
    try {
      layout = layoutOf(bytes, o.maxKeys);
      head = headOf(layout.rest);
    } catch {
      return NOT_A_KEY_UPDATE;
    }
    const problem = keyUpdateProblem(head, false);
    if (problem !== undefined) return refuse("invalid", `${problem.field}: ${problem.problem}`);
    const audience = audienceRefusal(head.audience, o);
    if (audience !== undefined) return audience;
    if (layout.count > o.maxKeys) {
      return refuse("tooLarge", `${layout.count} keys, more than maxKeys (${o.maxKeys})`);
    }
    return new KeyUpdateCheck(
      bytes,
      {
        version: head.version,
        snapshot: head.snapshot,
        sentAtMs: timestampMs(head.sentAt as NonNullable<typeof head.sentAt>),
        count: layout.count,
        // Only the known fields: unknown ones (any number, signed or not) are dropped here, in
        // the worker for a large update, and listeners get the update without them.
        rest: toBinary(KeyUpdateSchema, head),
        keysHash: head.snapshot ? entriesHash(bytes, layout.entries) : undefined,
      },
      layout,
    );
  }

  /**
   * Checks every key entry as decoding the whole `KeyUpdate` would (an undecodable entry
   * anywhere refuses it as undecodable; else the first key that is not a fingerprint refuses it
   * as invalid; rules are decided per key by the list), after their sizes: an entry over
   * `MAX_KEY_ENTRY_BYTES` refuses it as invalid before any is decoded.
   */
  keys(): CheckedKeys | Refusal {
    const { bytes } = this;
    const offsets = this.layout.entries;
    const big = oversizedEntry(offsets);
    if (big >= 0) {
      const size = (offsets[2 * big + 1] as number) - (offsets[2 * big] as number);
      return refuse(
        "invalid",
        `keys[${big}]: ${size} bytes, more than MAX_KEY_ENTRY_BYTES (${MAX_KEY_ENTRY_BYTES}) for one key`,
      );
    }
    const decoded = new Uint8Array(offsets.length / 2);
    const plain = new PlainKeyReader(bytes);
    let first: Refusal | undefined;
    for (let i = 0; i < decoded.length; i++) {
      const start = offsets[2 * i] as number;
      const end = offsets[2 * i + 1] as number;
      let k: { apiKeySha256: string } = plain;
      if (!plain.read(start, end, true)) {
        decoded[i] = 1;
        try {
          k = fromBinary(KeyStatusSchema, bytes.subarray(start, end), { readUnknownFields: false });
        } catch {
          return NOT_A_KEY_UPDATE;
        }
      }
      const bad = first === undefined ? keyStatusProblem(k, i, false) : undefined;
      if (bad !== undefined) first = refuse("invalid", `${bad.field}: ${bad.problem}`);
    }
    return first ?? { offsets, decoded };
  }
}

function headOf(rest: Uint8Array) {
  return fromBinary(KeyUpdateSchema, rest, { readUnknownFields: false });
}

function signatureRefusal(s: SignedKeyUpdate, o: KeyUpdateCheckOptions): Refusal | undefined {
  if (s.signature.length === 0) {
    if (o.acceptUnsigned) return undefined;
    return refuse("missingSignature", "not signed, and signatures are required");
  }
  const pinned = o.signers.get(s.signer);
  const signer = JSON.stringify(shownText(s.signer, 64));
  if (pinned === undefined) {
    return refuse("unknownSigner", `signed by ${signer}, a signer without a configured public key`);
  }
  if (!verifySignature(s.keyUpdate, s.signature, pinned.key)) {
    return refuse(
      "badSignature",
      `the signature by ${signer} does not verify with the pinned key ${pinned.fingerprint}`,
    );
  }
  return undefined;
}

function audienceRefusal(audience: string, o: KeyUpdateCheckOptions): Refusal | undefined {
  if (audience === o.audience) return undefined;
  if (audience === "") {
    if (o.acceptUnbound) return undefined;
    return refuse(
      "wrongAudience",
      `it names no audience, and keyUpdateAudience is ${JSON.stringify(o.audience)} (set acceptUnboundKeyUpdates to take such updates)`,
    );
  }
  return refuse(
    "wrongAudience",
    `its audience is ${JSON.stringify(shownText(audience, 64))}, not keyUpdateAudience ${JSON.stringify(o.audience)}`,
  );
}
