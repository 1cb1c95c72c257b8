import { fromBinary } from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { UsageBatchSchema, type UsageRecord } from "../../gen/billing/v1/usage_pb.js";

/** The tag of `UsageBatch.records` (field 1, length-delimited): `(1 << 3) | 2`. */
const RECORDS_TAG = 0x0a;

/** The bytes a record of `length` bytes takes in a `UsageBatch`: tag, length varint, record. */
export function framedSize(length: number): number {
  let n = 2; // the tag and the varint's last byte
  for (let v = length; v > 0x7f; v >>>= 7) n++;
  return n + length;
}

/**
 * The bytes of a `UsageBatch` holding already encoded `UsageRecord`s: each record's bytes are
 * copied once behind its field-1 tag and length, never decoded and encoded again. The same bytes
 * as protobuf-es `toBinary(UsageBatchSchema, …)` of those records (a property test checks it).
 */
export function usageBatchBytes(records: readonly Uint8Array[]): Buffer {
  let total = 0;
  for (const r of records) total += framedSize(r.length);
  const out = Buffer.allocUnsafe(total);
  let pos = 0;
  for (const r of records) {
    out[pos++] = RECORDS_TAG;
    let v = r.length;
    while (v > 0x7f) {
      out[pos++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    out[pos++] = v;
    out.set(r, pos);
    pos += r.length;
  }
  return out;
}

/**
 * The records of one message on `<prefix>/report` (a `UsageBatch`), oldest first: the one
 * decoder for consumers. Throws when the payload is not a `UsageBatch`.
 */
export function decodeUsageBatch(payload: Uint8Array): UsageRecord[] {
  return fromBinary(UsageBatchSchema, payload).records;
}

/**
 * The bytes of each `UsageRecord` in a `UsageBatch` payload, oldest first, without decoding them
 * (so that one bad record can be set aside alone, with its own bytes). Fields a newer schema adds
 * to the batch are skipped. Throws when the payload is not a `UsageBatch`.
 */
export function usageBatchRecordBytes(payload: Uint8Array): Uint8Array[] {
  const reader = new BinaryReader(payload);
  const records: Uint8Array[] = [];
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) records.push(reader.bytes());
    else reader.skip(wireType, field);
  }
  return records;
}
