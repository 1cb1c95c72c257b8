import { fromBinary } from "@bufbuild/protobuf";
import {
  type KeyState,
  type KeyStatus,
  KeyStatusSchema,
  type KeyUpdate,
} from "../../gen/billing/v1/usage_pb.js";
import { infoOf, isListed, type KeyInfo } from "./key-info.js";
import { PlainKeyReader } from "./key-update-layout.js";

/** One key entry of an update, as the list keeps it: undefined `info` removes the key. */
export interface StagedKey {
  readonly hash: string;
  readonly info: KeyInfo | undefined;
}

/** The key entries of an update, read one at a time (a list of a million is not decoded at once). */
export interface KeyEntries {
  readonly count: number;
  /** Entry `i` as the list keeps it. */
  read(i: number): StagedKey;
  /** Entry `i` as a `KeyStatus` message (what listeners get in `update.keys`). */
  status(i: number): KeyStatus;
}

/** The entries of a decoded `KeyUpdate` (what `KeyList.apply` is given). */
export function decodedEntries(u: KeyUpdate, invalid: () => void): KeyEntries {
  return {
    count: u.keys.length,
    read(i) {
      const k = u.keys[i] as KeyStatus;
      return {
        hash: k.apiKeySha256.toLowerCase(),
        info: isListed(k.state) ? infoOf(k, invalid) : undefined,
      };
    },
    status: (i) => u.keys[i] as KeyStatus,
  };
}

/** Plain entries beyond this many distinct (state, app, reason) get an object each. */
const MAX_SHARED = 65_536;

/**
 * The entries of checked `KeyUpdate` bytes (see `KeyUpdateCheck.keys`): `offsets` holds each
 * entry's `[start, end)`, and `decoded[i]` is 1 when entry `i` has rules or other fields (it is
 * decoded as a message), 0 when it is a plain key, read straight from the bytes. Plain keys with
 * the same state, app and reason share one frozen entry: a million keys of a thousand apps make
 * a thousand objects, not a million, which keeps the garbage collector's pauses short.
 */
export function checkedEntries(
  bytes: Buffer,
  offsets: Uint32Array,
  decoded: Uint8Array,
  invalid: () => void,
): KeyEntries {
  const status = (i: number) =>
    fromBinary(KeyStatusSchema, bytes.subarray(offsets[2 * i], offsets[2 * i + 1]), {
      readUnknownFields: false,
    });
  const plain = new PlainKeyReader(bytes);
  const shared = new Map<string, KeyInfo>();
  const plainInfo = (state: KeyState, appId: string, reason: string): KeyInfo => {
    const id = `${state}\u0000${appId}\u0000${reason}`;
    let info = shared.get(id);
    if (info === undefined) {
      info = Object.freeze({ state, appId, reason });
      if (shared.size < MAX_SHARED) shared.set(id, info);
    }
    return info;
  };
  return {
    count: decoded.length,
    read(i) {
      if (decoded[i] === 1) {
        const k = status(i);
        return { hash: k.apiKeySha256, info: isListed(k.state) ? infoOf(k, invalid) : undefined };
      }
      if (!plain.read(offsets[2 * i] as number, offsets[2 * i + 1] as number, false)) {
        throw new Error(`key entry ${i} is not plain`); // checked before
      }
      const { apiKeySha256, state, appId, reason } = plain;
      return {
        hash: apiKeySha256,
        info: isListed(state) ? plainInfo(state, appId, reason) : undefined,
      };
    },
    status,
  };
}
