import { create, type JsonObject, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { KeyState, UsageRecordSchema } from "../../../gen/billing/v1/usage_pb.js";
import { BillingClient, type BillingClientOptions, hashApiKey } from "../../../src/index.js";
import { useEmbeddedBroker } from "../../helpers/embedded-broker.js";
import { keyUpdate } from "../../helpers/fixtures.js";
import { freePort } from "../../helpers/mosquitto.js";
import { waitUntil } from "../../helpers/time.js";

// Edges of validation found by the adversarial review of issue 9.

const suite = useEmbeddedBroker();
const options = (extra: BillingClientOptions = {}) => suite.options({ logger: () => {}, ...extra });
const { received } = suite;

describe("metadata is read once: what was checked is what is sent", () => {
  it("a getter that answers differently on a second read", async () => {
    const client = new BillingClient(options());
    await client.connect(3000);
    let reads = 0;
    const metadata = {
      get note() {
        return reads++ === 0 ? "ok" : "\ud800lone";
      },
    };
    await client.reportUsage({ apiKey: "k", module: "llm", model: "m", usage: 1, metadata });
    await client.flush(3000);
    await waitUntil(() => received().length === 1, 3000, "the record");
    expect(received()[0]?.metadata).toEqual({ note: "ok" });
    expect(reads).toBe(1);
  });

  it("a Proxy that changes its answers, and an own __proto__ key arriving as a key", async () => {
    const client = new BillingClient(options());
    await client.connect(3000);
    let n = 0;
    const shifty = new Proxy({ a: "x" } as Record<string, unknown>, {
      get: (t, k) => (typeof k === "string" && n++ > 0 ? "x".repeat(100_000) : t[k as string]),
    });
    const protoKey = JSON.parse('{"__proto__": "kept", "b": 1}');
    await client.reportUsage({
      apiKey: "k",
      module: "llm",
      model: "m",
      usage: 1,
      metadata: shifty as JsonObject,
    });
    await client.reportUsage({
      apiKey: "k",
      module: "llm",
      model: "m",
      usage: 2,
      metadata: protoKey,
    });
    await client.flush(3000);
    await waitUntil(() => received().length === 2, 3000, "the records");
    const [a, b] = received();
    expect(a?.metadata).toEqual({ a: "x" });
    expect(Object.keys(b?.metadata ?? {})).toEqual(["__proto__", "b"]);
    expect(Object.getOwnPropertyDescriptor(b?.metadata, "__proto__")?.value).toBe("kept");
  });
});

describe("the early size check never refuses a record that fits", () => {
  it("any record whose encoding fits maxRecordBytes exactly is accepted; one byte less refuses it", async () => {
    const text = fc.string({ minLength: 0, maxLength: 20, unit: "grapheme-ascii" });
    const name = fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/);
    const json = fc.letrec((tie) => ({
      value: fc.oneof(
        { depthSize: "small" },
        text,
        fc.double({ noNaN: true, noDefaultInfinity: true }),
        fc.boolean(),
        fc.constant(null),
        fc.array(tie("value"), { maxLength: 3 }),
        fc.dictionary(text, tie("value"), { maxKeys: 3 }),
      ),
    })).value;
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          module: name,
          model: name,
          appId: fc.oneof(fc.constant(""), name),
          producer: fc.oneof(fc.constant(""), name),
          usage: fc.oneof(fc.constant(0n), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })),
          ms: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 4_000_000_000_000 })),
          metadata: fc.dictionary(text, json, { maxKeys: 4 }),
        }),
        async (r) => {
          const record = create(UsageRecordSchema, {
            id: "0190a5d3-7e1a-7000-8000-000000000001",
            apiKeySha256: hashApiKey("k"),
            appId: r.appId,
            module: r.module,
            model: r.model,
            usage: r.usage,
            occurredAt: timestampFromMs(r.ms),
            metadata: r.metadata as JsonObject,
            producer: r.producer || "p",
          });
          const size = toBinary(UsageRecordSchema, record).length;
          const fits = new BillingClient(
            options({ brokerPort: await freePort(), clientId: "p", maxRecordBytes: size }),
          );
          try {
            await fits.reportUsage(record);
          } finally {
            await fits.close(0).catch(() => {});
          }
          const tight = new BillingClient(
            options({ brokerPort: await freePort(), clientId: "p", maxRecordBytes: size - 1 }),
          );
          try {
            await expect(tight.reportUsage(record)).rejects.toMatchObject({
              code: "INVALID_ARGUMENT",
            });
          } finally {
            await tight.close(0).catch(() => {});
          }
        },
      ),
      { numRuns: 150 },
    );
  }, 60_000);
});

describe("text from the key list is checked before it reaches the wire", () => {
  it("an app id with control, bidi or oversize text is not stamped on records", async () => {
    const client = new BillingClient(options());
    await client.connect(3000);
    const bad = ["app\u202egnp.exe", "app\nx", "a".repeat(40_000)];
    await waitUntil(
      () => suite.broker.payloads("billing/keys/request").length > 0,
      3000,
      "subscribed",
    );
    await suite.broker.publish(
      "billing/keys/update",
      keyUpdate(
        [
          ...bad.map((appId, i) => ({ key: `bad-${i}`, state: KeyState.ACTIVE, appId })),
          { key: "good", state: KeyState.ACTIVE, appId: "app-good" },
        ],
        true,
      ),
    );
    await waitUntil(() => client.keys.loaded, 3000, "the key list");
    for (const key of ["bad-0", "bad-1", "bad-2", "good"]) {
      await client.reportUsage({ apiKey: key, module: "llm", model: "m", usage: 1 });
    }
    await client.flush(3000);
    await waitUntil(() => received().length === 4, 3000, "the records");
    expect(received().map((r) => r.appId)).toEqual(["", "", "", "app-good"]);
  });
});

describe("names refuse every invisible format character", () => {
  it("U+061C, zero-width space and joiner, word joiner, tag characters, soft hyphen", async () => {
    const client = new BillingClient(options({ brokerPort: await freePort() }));
    for (const module of [
      "a\u061cb",
      "a\u200bb",
      "a\u200db",
      "a\u2060b",
      "a\u{e0041}b",
      "a\u00adb",
    ]) {
      await expect(
        client.reportUsage({ apiKey: "k", module, model: "m", usage: 1 }),
      ).rejects.toMatchObject({ code: "INVALID_ARGUMENT", field: "module" });
    }
    // Visible non-ASCII text is fine.
    await client.reportUsage({ apiKey: "k", module: "语音识别", model: "modèle-ü", usage: 1 });
    expect(client.stats().queued).toBe(1);
  });
});

describe("a PEM mistake never echoes the value", () => {
  it("key material in another format is not copied into the error", () => {
    const secret = "MC4CAQAwBQYDK2VwBCIEIBvJx0Uq2kZdw8wW5tKkZ1w3Yb6wQ6U2kq8R1N3f5m7p";
    let message = "";
    try {
      new BillingClient({
        cert: "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n",
        key: secret,
      });
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/^\[INVALID_ARGUMENT\] key: must be PEM text/);
    expect(message).not.toContain(secret.slice(0, 16));
  });
});
