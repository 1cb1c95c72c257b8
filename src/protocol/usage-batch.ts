import { fromBinary } from "@bufbuild/protobuf";
import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { UsageBatchSchema, type UsageRecord } from "../../gen/billing/v1/usage_pb.js";

/**
 * The bytes of a `UsageBatch` holding already encoded `UsageRecord`s: each record's bytes are
 * written once, as field 1 (length-delimited), never decoded and encoded again.
 */
export function usageBatchBytes(records: readonly Uint8Array[]): Uint8Array {
  const writer = new BinaryWriter();
  for (const r of records) writer.tag(1, WireType.LengthDelimited).bytes(r);
  return writer.finish();
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
