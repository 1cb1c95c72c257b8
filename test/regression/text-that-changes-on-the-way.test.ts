import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { BillingClient, BillingError, UsageRecordSchema } from "../../src/index.js";
import { useEmbeddedBroker } from "../helpers/embedded-broker.js";

// Text that UTF-8, PostgreSQL or a terminal would change on the way (issue 9.6): refused, nothing
// queued or sent; never silently replaced.

const suite = useEmbeddedBroker();
const { options, received } = suite;
const base = { apiKey: "key-1", module: "llm", model: "gpt-4", usage: 1 };

// ---- 6. text that changes on the way ---------------------------------------------------------

describe("text that would change on the way is refused, nothing queued or sent", () => {
  const key = "0".repeat(64);
  const record = (patch: Record<string, unknown>) =>
    create(UsageRecordSchema, {
      apiKeySha256: key,
      module: "tts",
      model: "voice",
      usage: 1n,
      ...patch,
    });
  const cases: Array<[string, () => unknown]> = [
    ["apiKey with a lone high surrogate", () => ({ ...base, apiKey: "key-\uD800" })],
    ["apiKey with a lone low surrogate", () => ({ ...base, apiKey: "\uDC00-key" })],
    ["module with a lone surrogate", () => ({ ...base, module: "ll\uD800m" })],
    ["model with a lone surrogate", () => ({ ...base, model: "gpt\uDFFF" })],
    ["metadata value with a lone surrogate", () => ({ ...base, metadata: { note: "a\uD800b" } })],
    [
      "metadata nested value with a lone surrogate",
      () => ({ ...base, metadata: { a: [{ b: "\uDC01" }] } }),
    ],
    ["metadata key with a lone surrogate", () => ({ ...base, metadata: { "k\uD800": 1 } })],
    // PostgreSQL's text and jsonb cannot hold U+0000: the backend could not store these.
    ["metadata value with U+0000", () => ({ ...base, metadata: { note: "a\u0000b" } })],
    ["metadata key with U+0000", () => ({ ...base, metadata: { "k\u0000": 1 } })],
    ["module with U+202E (bidi override)", () => ({ ...base, module: "llm\u202Eevil" })],
    ["model with U+202E (bidi override)", () => ({ ...base, model: "\u202Egpt" })],
    ["module with U+2028 (line separator)", () => ({ ...base, module: "llm\u2028x" })],
    ["model with U+2028 (line separator)", () => ({ ...base, model: "gpt\u2028" })],
    [
      "create()d record with occurredAt.seconds 1e15",
      () => record({ occurredAt: { seconds: 10n ** 15n, nanos: 0 } }),
    ],
    [
      "create()d record with occurredAt.nanos 1e9",
      () => record({ occurredAt: { seconds: 1_700_000_000n, nanos: 1_000_000_000 } }),
    ],
    ["create()d record with a control character in appId", () => record({ appId: "app\n1" })],
    ["create()d record with NUL in producer", () => record({ producer: "svc\u0000x" })],
    ["create()d record with a lone surrogate in module", () => record({ module: "t\uD800s" })],
  ];
  for (const [name, input] of cases) {
    it(name, async () => {
      const client = new BillingClient(options());
      await client.connect(5000);
      const err = await client.reportUsage(input() as never).catch((e: unknown) => e);
      expect(err, "what reportUsage gave (an id: the input was accepted)").toBeInstanceOf(
        BillingError,
      );
      expect(err).toMatchObject({ code: "INVALID_ARGUMENT" });
      expect(client.stats()).toMatchObject({ queued: 0, rejected: 1 });
      // A valid record after it goes through alone: the refused one never reached the suite.broker.
      const sentinel = await client.reportUsage({ ...base, module: "sentinel" });
      await client.flush(5000);
      expect(received().map((r) => r.id)).toEqual([sentinel]);
    });
  }

  it("two different lone-surrogate keys are not folded into one fingerprint", async () => {
    const client = new BillingClient(options());
    await client.connect(5000);
    const a = await client.reportUsage({ ...base, apiKey: "\uD800" }).catch((e: unknown) => e);
    const b = await client.reportUsage({ ...base, apiKey: "\uD801" }).catch((e: unknown) => e);
    await client.flush(5000);
    // Both are refused; were they accepted, they would carry the one SHA-256 of "\uFFFD".
    const fingerprints = received().map((r) => r.apiKeySha256);
    expect(fingerprints, "records sent for two distinct keys").toEqual([]);
    expect([a, b]).toEqual([
      expect.objectContaining({ code: "INVALID_ARGUMENT" }),
      expect.objectContaining({ code: "INVALID_ARGUMENT" }),
    ]);
  });
});
