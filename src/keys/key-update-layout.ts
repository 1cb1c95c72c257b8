import { isUtf8 } from "node:buffer";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";

/** Where the key entries of an encoded `KeyUpdate` are, found without decoding them. */
export interface KeyUpdateLayout {
  /** `[start, end)` byte offsets of each key entry (field 1), for the first `maxEntries`. */
  readonly entries: Uint32Array;
  /** How many key entries there are (also those past `maxEntries`). */
  readonly count: number;
  /** Every other field's records, in order: a `KeyUpdate` without keys when decoded. */
  readonly rest: Uint8Array;
}

/**
 * The layout of the `KeyUpdate` bytes `bytes`, keeping the offsets of at most `maxEntries` keys.
 * Throws when the bytes are not protobuf records, or a key entry is not length-delimited.
 * Decoding `rest` gives the other fields exactly as decoding the whole message would (the last
 * occurrence of a scalar wins, occurrences of `sent_at` merge), as key entries are independent.
 */
export function layoutOf(bytes: Uint8Array, maxEntries: number): KeyUpdateLayout {
  const r = new BinaryReader(bytes);
  let entries = new Uint32Array(Math.min(2 * maxEntries, 1024));
  let count = 0;
  const restParts: Array<[number, number]> = [];
  let restBytes = 0;
  while (r.pos < r.len) {
    const at = r.pos;
    const [no, wt] = r.tag();
    if (no !== 1) {
      r.skip(wt, no);
      restParts.push([at, r.pos]);
      restBytes += r.pos - at;
      continue;
    }
    if (wt !== WireType.LengthDelimited) throw new Error("a key entry that is not a message");
    const len = r.uint32();
    const start = r.pos;
    r.pos += len;
    if (r.pos > r.len) throw new RangeError("premature EOF");
    if (count < maxEntries) {
      if (2 * count + 2 > entries.length) {
        const grown = new Uint32Array(Math.min(entries.length * 2, 2 * maxEntries));
        grown.set(entries);
        entries = grown;
      }
      entries[2 * count] = start;
      entries[2 * count + 1] = r.pos;
    }
    count++;
  }
  const rest = new Uint8Array(restBytes);
  let o = 0;
  for (const [a, b] of restParts) {
    rest.set(bytes.subarray(a, b), o);
    o += b - a;
  }
  return { entries: entries.subarray(0, 2 * Math.min(count, maxEntries)), count, rest };
}

/** A key entry with only its key, app, state and reason (no rules): the common case. */
export interface PlainKeyStatus {
  readonly apiKeySha256: string;
  readonly appId: string;
  readonly state: number;
  readonly reason: string;
}

const HASH = 1;
const APP = 2;
const STATE = 3;
const REASON = 4;

/**
 * The entry at `buf[start, end)` when it has only fields 1–4 (key, app, state, reason) with their
 * own wire types and ASCII in its key, read as protobuf-es would read it; undefined otherwise
 * (decode it with `fromBinary`, which also tells what is wrong). With `validate`, throws where
 * `fromBinary` would (bounds, invalid UTF-8); without (bytes checked before), only reads.
 */
export function readPlainKeyStatus(
  buf: Buffer,
  start: number,
  end: number,
  validate: boolean,
): PlainKeyStatus | undefined {
  const r = new BinaryReader(buf.subarray(start, end));
  let apiKeySha256 = "";
  let appId = "";
  let state = 0;
  let reason = "";
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (no === STATE) {
      if (wt !== WireType.Varint) return undefined;
      state = r.int32();
      continue;
    }
    if (wt !== WireType.LengthDelimited || no > REASON) return undefined;
    const len = r.uint32();
    const a = start + r.pos;
    r.pos += len;
    if (r.pos > r.len) throw new RangeError("premature EOF");
    const b = start + r.pos;
    if (no === HASH) {
      if (validate && !isAscii(buf, a, b)) return undefined;
      apiKeySha256 = buf.toString("latin1", a, b);
    } else {
      if (validate && !isUtf8(buf.subarray(a, b))) throw new Error("invalid UTF-8");
      if (no === APP) appId = buf.toString("utf8", a, b);
      else reason = buf.toString("utf8", a, b);
    }
  }
  return { apiKeySha256, appId, state, reason };
}

function isAscii(buf: Buffer, a: number, b: number): boolean {
  for (let i = a; i < b; i++) if ((buf[i] as number) > 0x7f) return false;
  return true;
}
