import { fromBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { UsageRecordSchema } from "../../../gen/billing/v1/usage_pb.js";
import { checkMessage, recordProblem } from "../../../src/consumer/record-validation.js";
import { usageBatchBytes, usageBatchRecordBytes } from "../../../src/protocol/usage-batch.js";
import { encodeUsage } from "../../../src/protocol/usage-input.js";

const ctx = { producer: "svc-1", maxRecordBytes: 32_768, appIdOf: () => "app-1" };

describe("the consumer's validation", () => {
  it("accepts every record reportUsage accepts (property)", () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 140 }),
        fc.string({ minLength: 1, maxLength: 140 }),
        fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        fc.option(fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 3 })), { nil: undefined }),
        (module, model, usage, metadata) => {
          let bytes: Uint8Array;
          try {
            bytes = encodeUsage({ apiKey: "k", module, model, usage, metadata }, ctx).bytes;
          } catch {
            return; // refused at the producer: nothing to compare
          }
          expect(recordProblem(fromBinary(UsageRecordSchema, bytes))).toBeUndefined();
        },
      ),
      { numRuns: 500 },
    );
  });

  it("splits a batch record by record, skips fields a newer schema adds, refuses a cut batch", () => {
    const a = encodeUsage({ apiKey: "k", module: "llm", model: "m", usage: 1 }, ctx).bytes;
    const b = encodeUsage({ apiKey: "k", module: "llm", model: "m", usage: 2 }, ctx).bytes;
    const w = new BinaryWriter();
    w.tag(1, WireType.LengthDelimited).bytes(a);
    w.tag(7, WireType.Varint).uint32(42); // a field this version does not know
    w.tag(1, WireType.LengthDelimited).bytes(b);
    const payload = w.finish();
    const hex = (xs: Uint8Array[]) => xs.map((x) => Buffer.from(x).toString("hex"));
    expect(hex(usageBatchRecordBytes(payload))).toEqual(hex([a, b]));
    expect(checkMessage(payload).records.map((r) => r.usage)).toEqual([1n, 2n]);
    const cut = usageBatchBytes([a, b]).slice(0, -3);
    expect(() => usageBatchRecordBytes(cut)).toThrow();
    expect(checkMessage(cut).rejected).toEqual([
      { reason: "the message is not a billing.v1.UsageBatch", payload: cut },
    ]);
    // A record that does not decode is set aside alone, with its own bytes.
    const bad = new Uint8Array([0x0a, 0x05, 0x01]);
    const mixed = usageBatchBytes([a, bad]);
    const checked = checkMessage(mixed);
    expect(checked.records).toHaveLength(1);
    expect(checked.rejected).toEqual([
      { reason: "not a billing.v1.UsageRecord", payload: Buffer.from(bad) },
    ]);
  });
});
