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
 * The most bytes one key entry (a `KeyStatus`) may take. A genuine one takes ~100 bytes, a few
 * KB with long rules (up to ~500 allowed methods); a larger one is refused as `invalid` before
 * it is decoded (it would be decoded in one step on the event loop when applied), and
 * `signKeyUpdate` does not sign it.
 */
export const MAX_KEY_ENTRY_BYTES = 65_536;

/** The first of the entries at `offsets` over `MAX_KEY_ENTRY_BYTES`, or -1. */
export function oversizedEntry(offsets: Uint32Array): number {
  for (let i = 0; i < offsets.length; i += 2) {
    if ((offsets[i + 1] as number) - (offsets[i] as number) > MAX_KEY_ENTRY_BYTES) return i / 2;
  }
  return -1;
}

/**
 * The layout of the `KeyUpdate` bytes `bytes`, keeping the offsets of at most `maxEntries` keys.
 * Throws when the bytes are not protobuf records, or a key entry is not length-delimited.
 * Decoding `rest` gives the other fields exactly as decoding the whole message would (the last
 * occurrence of a scalar wins, occurrences of `sent_at` merge), as key entries are independent.
 * The other fields' records are gathered as runs (records next to each other are one run), so
 * a million unknown fields in a row cost no more than one.
 */
export function layoutOf(bytes: Uint8Array, maxEntries: number): KeyUpdateLayout {
  const r = new BinaryReader(bytes);
  let entries = new Uint32Array(Math.min(2 * maxEntries, 1024));
  let count = 0;
  const restRuns: number[] = []; // [start, end) of each run, flat
  let restBytes = 0;
  while (r.pos < r.len) {
    const at = r.pos;
    if (bytes[at] === KEY_TAG) {
      r.pos++; // the one-byte tag of field 1, length-delimited: the common case, read quickly
    } else {
      const [no, wt] = r.tag();
      if (no !== 1) {
        r.skip(wt, no);
        if (restRuns.length > 0 && restRuns[restRuns.length - 1] === at) {
          restRuns[restRuns.length - 1] = r.pos;
        } else restRuns.push(at, r.pos);
        restBytes += r.pos - at;
        continue;
      }
      if (wt !== WireType.LengthDelimited) throw new Error("a key entry that is not a message");
    }
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
  for (let i = 0; i < restRuns.length; i += 2) {
    const a = restRuns[i] as number;
    const b = restRuns[i + 1] as number;
    rest.set(bytes.subarray(a, b), o);
    o += b - a;
  }
  return { entries: entries.subarray(0, 2 * Math.min(count, maxEntries)), count, rest };
}

/**
 * A hash of the key entries at `offsets` that does not depend on their order: the sum, lane by
 * lane, of a 64-bit hash of each entry's bytes, with their count. It tells a snapshot sent again
 * (the same entries, in any order) from another list under the same version; both were signed by
 * the backend, so it needs no resistance to forgery, only to accidents (2^-64), and it is cheap:
 * a pass over the bytes, no call per entry.
 */
export function entriesHash(bytes: Uint8Array, offsets: Uint32Array): string {
  let a = 0;
  let b = 0;
  for (let i = 0; i < offsets.length; i += 2) {
    let h1 = 0xdeadbeef;
    let h2 = 0x41c6ce57;
    for (let j = offsets[i] as number; j < (offsets[i + 1] as number); j++) {
      const c = bytes[j] as number;
      h1 = Math.imul(h1 ^ c, 2654435761);
      h2 = Math.imul(h2 ^ c, 1597334677);
    }
    h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
    h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
    a = (a + (h1 >>> 0)) >>> 0;
    b = (b + (h2 >>> 0)) >>> 0;
  }
  const hex = (n: number) => n.toString(16).padStart(8, "0");
  return `${hex(a)}${hex(b)}:${offsets.length / 2}`;
}

const KEY_TAG = 0x0a; // field 1 (keys), length-delimited
const HASH = 1;
const APP = 2;
const STATE = 3;
const REASON = 4;

/**
 * Reads key entries that hold only their key, app, state and reason (fields 1–4, each with its
 * own wire type; no rules): the common case, read straight from the bytes without allocating
 * more than the strings, as protobuf-es would read them (the last occurrence of a field wins).
 */
export class PlainKeyReader {
  apiKeySha256 = "";
  appId = "";
  state = 0;
  reason = "";
  private pos = 0;
  private end = 0;

  constructor(private readonly buf: Buffer) {}

  /**
   * Reads the entry at `[start, end)`; false when it is not plain or not well-formed (decode it
   * with `fromBinary`, which tells what is wrong), or, with `checkUtf8`, its key is not ASCII or
   * its app or reason not valid UTF-8 (which `fromBinary` refuses).
   */
  read(start: number, end: number, checkUtf8: boolean): boolean {
    const buf = this.buf;
    this.pos = start;
    this.end = end;
    this.apiKeySha256 = "";
    this.appId = "";
    this.state = 0;
    this.reason = "";
    while (this.pos < end) {
      const at = this.pos;
      const tag = this.varint();
      // protobuf-es refuses a tag over 5 bytes or 32 bits; such an entry is decoded to say so.
      if (
        this.pos < 0 ||
        this.pos - at > 5 ||
        (this.pos - at === 5 && (buf[at + 4] as number) > 0x0f)
      ) {
        return false;
      }
      const no = tag >>> 3;
      const wt = tag & 7;
      if (no === STATE) {
        if (wt !== WireType.Varint) return false;
        const v = this.varint();
        if (this.pos < 0) return false;
        this.state = v | 0;
        continue;
      }
      if (wt !== WireType.LengthDelimited || no < HASH || no > REASON) return false;
      const len = this.varint();
      if (this.pos < 0) return false;
      const a = this.pos;
      const b = a + len;
      if (b > end) return false;
      this.pos = b;
      if (no === HASH) {
        if (checkUtf8 && !isAscii(buf, a, b)) return false;
        this.apiKeySha256 = buf.toString("latin1", a, b);
      } else {
        if (checkUtf8 && !isUtf8(buf.subarray(a, b))) return false;
        const text = buf.toString("utf8", a, b);
        if (no === APP) this.appId = text;
        else this.reason = text;
      }
    }
    return true;
  }

  /**
   * A varint's low 32 bits (as protobuf-es reads an int32 or uint32, at most 10 bytes); sets
   * `pos` to -1 when it runs past the entry or over 10 bytes.
   */
  private varint(): number {
    const buf = this.buf;
    let result = 0;
    for (let shift = 0; shift < 70; shift += 7) {
      if (this.pos >= this.end) break;
      const b = buf[this.pos++] as number;
      if (shift < 32) result |= (b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result >>> 0;
    }
    this.pos = -1;
    return -1;
  }
}

function isAscii(buf: Buffer, a: number, b: number): boolean {
  for (let i = a; i < b; i++) if ((buf[i] as number) > 0x7f) return false;
  return true;
}
