import { readFileSync, writeFileSync } from "node:fs";
import {
  create,
  type DescMessage,
  fromBinary,
  fromJson,
  type MessageShape,
  toBinary,
  toJson,
} from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import {
  HeartbeatSchema,
  KeyListRequestSchema,
  KeyState,
  KeyStatusSchema,
  KeyUpdateSchema,
  ProducerState,
  UsageRecordSchema,
} from "../../../gen/billing/v1/usage_pb.js";

const MAX_U64 = 2n ** 64n - 1n;

function roundTrip<Desc extends DescMessage>(schema: Desc, msg: MessageShape<Desc>) {
  const viaBinary = fromBinary(schema, toBinary(schema, msg));
  expect(viaBinary).toEqual(msg);
  const viaJson = fromJson(schema, toJson(schema, msg));
  expect(viaJson).toEqual(msg);
}

const metadata = {
  prompt_tokens: 100,
  completion_tokens: 50,
  temperature: 0.7,
  streamed: true,
  stop: null,
  tags: ["a", 1, false, null, { deep: { deeper: "ü" } }],
  text: "你好, мир — 👋",
  nested: { list: [], empty: {} },
};

describe("schema round trips", () => {
  for (const usage of [0n, 1n, 150n, MAX_U64]) {
    it(`UsageRecord with usage=${usage}`, () => {
      roundTrip(
        UsageRecordSchema,
        create(UsageRecordSchema, {
          id: "0190b4d2-7a4e-7c3d-8f1e-123456789abc",
          apiKeySha256: "a".repeat(64),
          appId: "app-1",
          module: "llm",
          model: "gpt-4",
          usage,
          occurredAt: timestampFromMs(1_700_000_000_123),
          metadata,
          producer: "billing-host-abc123",
        }),
      );
    });
  }

  it("UsageRecord metadata keeps JSON types, nesting, null and non-ASCII text", () => {
    const rec = create(UsageRecordSchema, { metadata });
    const back = fromBinary(UsageRecordSchema, toBinary(UsageRecordSchema, rec));
    expect(back.metadata).toEqual(metadata);
    expect(typeof back.metadata?.temperature).toBe("number");
    expect(back.metadata?.streamed).toBe(true);
  });

  it("UsageRecord JSON form carries uint64 as a string (no precision loss)", () => {
    const json = toJson(UsageRecordSchema, create(UsageRecordSchema, { usage: MAX_U64 })) as {
      usage: string;
    };
    expect(json.usage).toBe("18446744073709551615");
  });

  it("KeyStatus / KeyUpdate", () => {
    const keys = [
      create(KeyStatusSchema, {
        apiKeySha256: "b".repeat(64),
        appId: "app-2",
        state: KeyState.BLOCKED,
        reason: "unpaid invoice",
      }),
      create(KeyStatusSchema, { apiKeySha256: "c".repeat(64), state: KeyState.ACTIVE }),
      create(KeyStatusSchema, { apiKeySha256: "d".repeat(64), state: KeyState.DELETED }),
    ];
    roundTrip(KeyStatusSchema, keys[0] as (typeof keys)[0]);
    roundTrip(
      KeyUpdateSchema,
      create(KeyUpdateSchema, { keys, snapshot: true, sentAt: timestampFromMs(1) }),
    );
    roundTrip(KeyUpdateSchema, create(KeyUpdateSchema, { keys: [], snapshot: false }));
  });

  it("KeyListRequest", () => {
    roundTrip(
      KeyListRequestSchema,
      create(KeyListRequestSchema, { producer: "p", sentAt: timestampFromMs(2) }),
    );
  });

  it("Heartbeat", () => {
    roundTrip(
      HeartbeatSchema,
      create(HeartbeatSchema, {
        producer: "p",
        sentAt: timestampFromMs(3),
        queued: 1n,
        inFlight: 2n,
        published: MAX_U64,
        failed: 4n,
        rejected: 5n,
        reconnects: 6n,
        state: ProducerState.LOST,
      }),
    );
  });
});

// The bytes a backend receives must never change by accident. The fixture was written once
// (UPDATE_GOLDEN=1 npx vitest run test/unit/proto/schema.test.ts) and is committed.
describe("golden UsageRecord fixture", () => {
  const path = new URL("../../fixtures/usage-record.golden.binpb", import.meta.url);
  const expected = create(UsageRecordSchema, {
    id: "01890a5d-ac96-774b-bcce-b302099a8057",
    apiKeySha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    appId: "app-golden",
    module: "llm",
    model: "gpt-4",
    usage: 150n,
    occurredAt: { seconds: 1_700_000_000n, nanos: 123_000_000 },
    metadata: { prompt_tokens: 100, completion_tokens: 50, temperature: 0.7, lang: "zh-CN" },
    producer: "billing-golden-host",
  });

  if (process.env.UPDATE_GOLDEN === "1") {
    writeFileSync(path, toBinary(UsageRecordSchema, expected));
  }

  it("decodes to the expected values", () => {
    const bytes = readFileSync(path);
    const got = fromBinary(UsageRecordSchema, bytes);
    expect(got.id).toBe("01890a5d-ac96-774b-bcce-b302099a8057");
    expect(got.apiKeySha256).toBe(
      "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    );
    expect(got.appId).toBe("app-golden");
    expect(got.module).toBe("llm");
    expect(got.model).toBe("gpt-4");
    expect(got.usage).toBe(150n);
    expect(got.occurredAt?.seconds).toBe(1_700_000_000n);
    expect(got.occurredAt?.nanos).toBe(123_000_000);
    expect(got.metadata).toEqual({
      prompt_tokens: 100,
      completion_tokens: 50,
      temperature: 0.7,
      lang: "zh-CN",
    });
    expect(got.producer).toBe("billing-golden-host");
  });

  it("re-encodes to the same bytes", () => {
    const bytes = new Uint8Array(readFileSync(path));
    expect(toBinary(UsageRecordSchema, expected)).toEqual(bytes);
  });
});
