import type { KeyObject } from "node:crypto";
import { fromBinary } from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { type Timestamp, timestampMs } from "@bufbuild/protobuf/wkt";
import {
  KeyState,
  type KeyUpdate,
  KeyUpdateSchema,
  type SignedKeyUpdate,
  SignedKeyUpdateSchema,
} from "../../gen/billing/v1/usage_pb.js";
import { shownText } from "../common/text.js";
import type { KeyChange, KeyList } from "./key-list.js";
import { keyUpdateProblem } from "./key-update-problem.js";
import { verifySignature } from "./signed-key-update.js";

/** Why a key update was refused. A refused update leaves the key list as it was. */
export type KeyUpdateRefusal =
  | "missingSignature"
  | "unknownSigner"
  | "badSignature"
  | "undecodable"
  | "invalid"
  | "replayed"
  | "duplicate"
  | "tooLarge";

/** Refused key updates by reason. */
export type KeyUpdateRefusals = Record<KeyUpdateRefusal, number>;

/** How the gate decides (from the client's options). */
export interface KeyUpdateGateOptions {
  /** The public keys that may sign updates, by signer name (`keyUpdatePublicKeys`). */
  publicKeys: ReadonlyMap<string, KeyObject>;
  /** Also accept unsigned updates; signed ones are still verified. */
  acceptUnsigned: boolean;
  /** The most keys the list may hold (`maxKeys`). */
  maxKeys: number;
  /** The largest payload accepted (`maxKeyUpdateBytes`). */
  maxBytes: number;
  /** The staleness bound (`maxKeyListAgeMs`); undefined: none. */
  maxAgeMs: number | undefined;
}

/** What became of one payload. */
export type KeyUpdateOutcome =
  | {
      readonly applied: true;
      readonly update: KeyUpdate;
      readonly changes: readonly KeyChange[];
      /**
       * The list is incomplete (this or an earlier delta skipped versions): the client should
       * ask for a snapshot.
       */
      readonly gap: boolean;
    }
  | { readonly applied: false; readonly reason: KeyUpdateRefusal; readonly detail: string };

const refuse = (reason: KeyUpdateRefusal, detail: string): KeyUpdateOutcome => ({
  applied: false,
  reason,
  detail,
});

/**
 * The version, kind and key count of an encoded KeyUpdate, read without decoding its keys (the
 * last occurrence of a field wins, as when protobuf decodes it).
 */
function scan(bytes: Uint8Array): { version: bigint; snapshot: boolean; entries: number } {
  const r = new BinaryReader(bytes);
  let version = 0n;
  let snapshot = false;
  let entries = 0;
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (no === 1 && wt === WireType.LengthDelimited) {
      entries++;
      r.skip(wt, no);
    } else if (no === 2 && wt === WireType.Varint) {
      snapshot = r.bool();
    } else if (no === 4 && wt === WireType.Varint) {
      version = BigInt(r.uint64());
    } else {
      r.skip(wt, no);
    }
  }
  return { version, snapshot, entries };
}

/** How many keys applying the delta `u` adds to `keys` (negative when it removes more). */
function growth(keys: KeyList, u: KeyUpdate): number {
  const present = new Map<string, boolean>();
  for (const k of u.keys) {
    present.set(k.apiKeySha256, k.state === KeyState.ACTIVE || k.state === KeyState.BLOCKED);
  }
  let n = 0;
  for (const [hash, after] of present) {
    n += (after ? 1 : 0) - (keys.lookupHash(hash) === undefined ? 0 : 1);
  }
  return n;
}

/**
 * Decides, for each payload that arrives on `<prefix>/keys/update`, whether it may change the
 * key list, and applies it when it may. In order, cheapest refusal first: the payload's size;
 * a `SignedKeyUpdate` that decodes; a version the list can take (read from the bytes before the
 * signature is checked and the keys decoded: a replay, even of a huge snapshot, costs neither —
 * safe, as it can only lead to a refusal); a signature by a configured signer that verifies (or,
 * with `acceptUnsigned`, none); the key count; the decoded `KeyUpdate`'s rules. Only then is the
 * list changed, in one synchronous step. Every refusal is counted by reason.
 *
 * Versions: a snapshot sets the version; a delta applies on top of the list it finds. A delta
 * before the first snapshot is applied but sets nothing (the snapshot replaces it). A delta that
 * skips versions is applied and reported as a gap, and the list is then **incomplete**: an update
 * in between (a revocation, say) may be missing. An incomplete list is never refreshed by deltas,
 * only by a snapshot at or above its version (one at its very version is taken then, as it is
 * the whole list the missing updates led to); the client keeps asking for one. The list's age runs
 * from the `sentAt` of the last snapshot or contiguous delta on a complete list (never later than
 * its arrival): neither a replay nor a delta after a gap can refresh it, so with
 * `maxKeyListAgeMs` a missed revocation passes for at most that long.
 */
export class KeyUpdateGate {
  /** Refused updates by reason. */
  readonly refused: KeyUpdateRefusals = {
    missingSignature: 0,
    unknownSigner: 0,
    badSignature: 0,
    undecodable: 0,
    invalid: 0,
    replayed: 0,
    duplicate: 0,
    tooLarge: 0,
  };
  /** Updates applied. */
  applied = 0;
  /**
   * How current the list is (ms since the epoch): when the last update that refreshed it was sent
   * (or arrived, if earlier). A delta after a gap does not refresh it. Undefined before the first.
   * The list's age, and `maxKeyListAgeMs` staleness, run from it.
   */
  currentAt: number | undefined;
  /** The version of the list: of the last snapshot, or delta after one. 0 before the first. */
  version = 0n;
  /** False after a delta skipped versions, until a snapshot at or above `version` arrives. */
  complete = true;

  constructor(
    readonly keys: KeyList,
    private readonly o: KeyUpdateGateOptions,
  ) {}

  /** Decides on one payload; `now` (ms since the epoch) is when it arrived. */
  receive(payload: Uint8Array, now = Date.now()): KeyUpdateOutcome {
    const outcome = this.decide(payload, now);
    if (outcome.applied) {
      this.applied++;
    } else this.refused[outcome.reason]++;
    return outcome;
  }

  private decide(payload: Uint8Array, now: number): KeyUpdateOutcome {
    const { maxBytes, maxKeys } = this.o;
    if (payload.length > maxBytes) {
      return refuse(
        "tooLarge",
        `${payload.length} bytes, more than maxKeyUpdateBytes (${maxBytes})`,
      );
    }
    if (payload.length === 0) {
      // What a client sees when someone clears a retained message on the topic.
      return refuse("undecodable", "an empty payload");
    }
    let signed: SignedKeyUpdate;
    try {
      signed = fromBinary(SignedKeyUpdateSchema, payload);
    } catch {
      return refuse("undecodable", `${payload.length} bytes that are not a SignedKeyUpdate`);
    }
    let head: ReturnType<typeof scan>;
    try {
      head = scan(signed.keyUpdate);
    } catch {
      return refuse("undecodable", "its key_update is not a KeyUpdate");
    }
    if (head.version === 0n) return refuse("invalid", "version: must be set (> 0)");
    if (head.version < this.version) {
      return refuse(
        "replayed",
        `version ${head.version} is older than ${this.version}, the last applied`,
      );
    }
    // The one update at the list's own version it takes: the snapshot that completes it.
    const completing = head.version === this.version && head.snapshot && !this.complete;
    if (head.version === this.version && !completing) {
      return refuse("duplicate", `version ${head.version} was applied already`);
    }
    const unsigned = this.checkSignature(signed);
    if (unsigned !== undefined) return unsigned;
    if (head.entries > maxKeys) {
      return refuse("tooLarge", `${head.entries} keys, more than maxKeys (${maxKeys})`);
    }
    let update: KeyUpdate;
    try {
      update = fromBinary(KeyUpdateSchema, signed.keyUpdate);
    } catch {
      return refuse("undecodable", "its key_update is not a KeyUpdate");
    }
    const problem = keyUpdateProblem(update, false); // rules: decided per key by KeyList
    if (problem !== undefined) return refuse("invalid", `${problem.field}: ${problem.problem}`);
    if (!update.snapshot && this.keys.size + head.entries > maxKeys) {
      const size = this.keys.size + growth(this.keys, update);
      if (size > maxKeys) {
        return refuse(
          "tooLarge",
          `the delta would make ${size} keys, more than maxKeys (${maxKeys})`,
        );
      }
    }
    const following = this.version > 0n; // a delta follows a snapshot
    const gap = !update.snapshot && following && update.version > this.version + 1n;
    const changes = this.keys.apply(update);
    if (update.snapshot) this.complete = true;
    else if (gap) this.complete = false;
    if (update.snapshot || following) {
      this.version = update.version;
      if (this.complete) this.refresh(update, now);
    }
    return { applied: true, update, changes, gap: gap || !this.complete };
  }

  private checkSignature(s: SignedKeyUpdate): KeyUpdateOutcome | undefined {
    if (s.signature.length === 0) {
      if (this.o.acceptUnsigned) return undefined;
      return refuse("missingSignature", "not signed, and signatures are required");
    }
    const key = this.o.publicKeys.get(s.signer);
    const signer = JSON.stringify(shownText(s.signer, 64));
    if (key === undefined) {
      return refuse(
        "unknownSigner",
        `signed by ${signer}, a signer without a configured public key`,
      );
    }
    if (!verifySignature(s.keyUpdate, s.signature, key)) {
      return refuse("badSignature", `the signature by ${signer} does not verify`);
    }
    return undefined;
  }

  /** The list is as current as `update`: its age runs from when it was sent (or arrived). */
  private refresh(update: KeyUpdate, now: number): void {
    const sent = timestampMs(update.sentAt as Timestamp); // set: checked by keyUpdateProblem
    this.currentAt = Math.min(now, sent);
    const maxAge = this.o.maxAgeMs;
    if (maxAge === undefined) return;
    this.keys.usableUntil = this.currentAt + maxAge;
  }
}
