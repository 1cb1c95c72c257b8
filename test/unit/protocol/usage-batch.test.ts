import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { UsageBatchSchema, UsageRecordSchema } from "../../../gen/billing/v1/usage_pb.js";
import {
  decodeUsageBatch,
  framedSize,
  usageBatchBytes,
  usageBatchRecordBytes,
} from "../../../src/protocol/usage-batch.js";

// The publisher frames a batch by hand (field-1 tag, varint length, the record's bytes as they
// were encoded at reportUsage): it must be exactly what protobuf-es writes for the same batch.

const text = fc.string({ maxLength: 40 });
const json = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small" },
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.boolean(),
    fc.constant(null),
    text,
    fc.array(tie("value"), { maxLength: 4 }),
    fc.dictionary(text, tie("value"), { maxKeys: 4 }),
  ),
})).value;
const record = fc
  .record({
    id: text,
    apiKeySha256: text,
    appId: text,
    module: text,
    model: text,
    usage: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    seconds: fc.bigInt({ min: 0n, max: 253402300799n }),
    nanos: fc.integer({ min: 0, max: 999_999_999 }),
    metadata: fc.option(fc.dictionary(text, json, { maxKeys: 6 }), { nil: undefined }),
    // Long strings make records whose length needs a 2- or 3-byte varint.
    producer: fc.oneof(text, fc.string({ minLength: 100, maxLength: 20_000 })),
  })
  .map(({ seconds, nanos, metadata, ...r }) =>
    create(UsageRecordSchema, {
      ...r,
      occurredAt: { seconds, nanos },
      ...(metadata === undefined ? {} : { metadata: metadata as never }),
    }),
  );

describe("UsageBatch framing", () => {
  it("equals protobuf-es toBinary(UsageBatchSchema) byte for byte and decodes back (property)", () => {
    fc.assert(
      fc.property(fc.array(record, { maxLength: 12 }), (records) => {
        const encoded = records.map((r) => toBinary(UsageRecordSchema, r));
        const framed = usageBatchBytes(encoded);
        const reference = toBinary(UsageBatchSchema, create(UsageBatchSchema, { records }));
        expect(Buffer.from(framed).equals(Buffer.from(reference))).toBe(true);
        expect(framed.length).toBe(encoded.reduce((n, e) => n + framedSize(e.length), 0));
        // The consumer's decoders: whole records, and each record's own bytes.
        expect(decodeUsageBatch(framed)).toEqual(fromBinary(UsageBatchSchema, reference).records);
        expect(usageBatchRecordBytes(framed).map((b) => Buffer.from(b))).toEqual(
          encoded.map((e) => Buffer.from(e)),
        );
      }),
      { numRuns: 300 },
    );
  });

  it("frames lengths at every varint boundary", () => {
    for (const n of [0, 1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152]) {
      const bytes = new Uint8Array(n).fill(7);
      const batch = create(UsageBatchSchema);
      // A record whose bytes are n bytes long is not needed: the framing treats them as opaque.
      const reference = Buffer.concat([
        Buffer.from(toBinary(UsageBatchSchema, batch)),
        Buffer.from([0x0a]),
        Buffer.from(varint(n)),
        Buffer.from(bytes),
      ]);
      expect(Buffer.from(usageBatchBytes([bytes])).equals(reference), `length ${n}`).toBe(true);
      expect(framedSize(n)).toBe(reference.length);
    }
  });
});

function varint(n: number): number[] {
  const out: number[] = [];
  let v = n;
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  out.push(v);
  return out;
}
