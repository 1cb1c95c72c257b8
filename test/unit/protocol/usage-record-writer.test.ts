import type { JsonObject } from "@bufbuild/protobuf";
import { create, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { UsageRecordSchema } from "../../../gen/billing/v1/usage_pb.js";
import { writeUsageRecord } from "../../../src/protocol/usage-record-writer.js";

// reportUsage writes a record's bytes directly (no message objects): they must be exactly what
// protobuf-es toBinary writes for the same record.

const text = fc.oneof(fc.string({ maxLength: 12 }), fc.string({ maxLength: 200, unit: "binary" }));
const json = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small" },
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.integer(),
    fc.boolean(),
    fc.constant(null),
    text,
    fc.array(tie("value"), { maxLength: 5 }),
    fc.dictionary(text, tie("value"), { maxKeys: 5 }),
  ),
})).value;
const fields = fc.record({
  id: text,
  apiKeySha256: text,
  appId: text,
  module: text,
  model: text,
  usage: fc.oneof(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.constant(0n)),
  seconds: fc.oneof(fc.integer({ min: 0, max: 253402300799 }), fc.constant(0)),
  nanos: fc.oneof(fc.integer({ min: 0, max: 999_999_999 }), fc.constant(0)),
  metadata: fc.option(fc.dictionary(text, json, { maxKeys: 8 }) as fc.Arbitrary<JsonObject>, {
    nil: undefined,
  }),
  producer: fc.oneof(text, fc.string({ minLength: 200, maxLength: 40_000 })),
});

describe("writeUsageRecord", () => {
  it("writes the bytes protobuf-es toBinary writes (property)", () => {
    fc.assert(
      fc.property(fields, (f) => {
        const { seconds, nanos, metadata, ...rest } = f;
        const reference = toBinary(
          UsageRecordSchema,
          create(UsageRecordSchema, {
            ...rest,
            occurredAt: { seconds: BigInt(seconds), nanos },
            ...(metadata === undefined ? {} : { metadata }),
          }),
        );
        expect(Buffer.from(writeUsageRecord(f)).toString("hex")).toBe(
          Buffer.from(reference).toString("hex"),
        );
      }),
      { numRuns: 1000 },
    );
  });

  it("keeps protobuf-es's key order and an own __proto__ key", () => {
    const metadata = JSON.parse('{"b":1,"10":2,"2":3,"__proto__":{"x":null},"":[]}');
    const f = {
      id: "i",
      apiKeySha256: "h",
      appId: "",
      module: "m",
      model: "n",
      usage: 5n,
      seconds: 1,
      nanos: 0,
      metadata,
      producer: "p",
    };
    const reference = toBinary(
      UsageRecordSchema,
      create(UsageRecordSchema, { ...f, occurredAt: { seconds: 1n, nanos: 0 } }),
    );
    expect(Buffer.from(writeUsageRecord(f)).equals(Buffer.from(reference))).toBe(true);
  });
});
