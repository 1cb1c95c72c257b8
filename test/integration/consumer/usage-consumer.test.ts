import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { connectAsync, type MqttClient } from "mqtt";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { UsageRecordSchema } from "../../../gen/billing/v1/usage_pb.js";
import {
  createUsageConsumer,
  type UsageConsumer,
  type UsageConsumerOptions,
} from "../../../src/consumer/index.js";
import { BillingClient, hashApiKey, type UsageRecord } from "../../../src/index.js";
import { makePki, type TestPki } from "../../helpers/certs.js";
import { batchPayload, tlsClientOptions } from "../../helpers/fixtures.js";
import { Mosquitto } from "../../helpers/mosquitto.js";
import { mosquittoAvailable } from "../../helpers/require-broker.js";
import { sleep, waitUntil } from "../../helpers/time.js";

const users = { svc: "svc-pass", backend: "backend-pass" };

describe.runIf(mosquittoAvailable())("createUsageConsumer (real mosquitto, MQTT 5, TLS)", () => {
  let pki: TestPki;
  let broker: Mosquitto;
  let raw: MqttClient;
  const consumers: UsageConsumer[] = [];
  const logs: string[] = [];
  beforeAll(async () => {
    pki = makePki();
    broker = await Mosquitto.start({
      pki,
      users,
      extra: ["max_inflight_messages 100"],
    });
    raw = await connectAsync({
      host: "127.0.0.1",
      port: broker.tlsPort,
      protocol: "mqtts",
      ca: pki.ca,
      username: "svc",
      password: users.svc,
      protocolVersion: 5,
    });
  });
  afterEach(async () => {
    for (const c of consumers.splice(0)) await c.close();
    logs.length = 0;
  });
  afterAll(async () => {
    await raw?.endAsync();
    await broker?.close();
  });
  const consumer = (o: Partial<UsageConsumerOptions>) => {
    const c = createUsageConsumer({
      brokerHost: "127.0.0.1",
      brokerPort: broker.tlsPort,
      ca: pki.ca,
      username: "backend",
      password: users.backend,
      reconnectBaseMs: 20,
      reconnectMaxMs: 200,
      logger: (level, msg) => logs.push(`${level}: ${msg}`),
      ...o,
    } as UsageConsumerOptions);
    consumers.push(c);
    return c;
  };
  const record = (usage: number, model = "m") =>
    create(UsageRecordSchema, {
      id: crypto.randomUUID(),
      apiKeySha256: hashApiKey("k"),
      module: "llm",
      model,
      usage: BigInt(usage),
      occurredAt: timestampNow(),
    });

  it("two consumers in one group split the records; each is handled exactly once", async () => {
    const handled: Array<{ by: number; record: UsageRecord }> = [];
    for (const by of [1, 2]) {
      const c = consumer({
        group: "split",
        clientId: `split-${by}`,
        topicPrefix: "split",
        onRecord: (record) => {
          handled.push({ by, record });
        },
      });
      await c.ready;
      expect(c.stats().protocolVersion).toBe(5);
    }
    const producer = new BillingClient(
      tlsClientOptions(broker.tlsPort, pki.ca, "svc", users.svc, { topicPrefix: "split" }),
    );
    const ids = await Promise.all(
      Array.from({ length: 2000 }, (_, i) =>
        producer.reportUsage({ apiKey: "k", module: "llm", model: "m", usage: i }),
      ),
    );
    await producer.close();
    await waitUntil(() => handled.length >= 2000, 20_000, "2000 records handled");
    await sleep(200); // nothing more arrives
    expect(handled).toHaveLength(2000);
    expect(new Set(handled.map((h) => h.record.id))).toEqual(new Set(ids));
    const byOne = handled.filter((h) => h.by === 1).length;
    expect(byOne).toBeGreaterThan(0);
    expect(byOne).toBeLessThan(2000); // both took a share
  });

  it("skips a duplicate only after its first copy was handled; a handler failure is retried", async () => {
    const calls: string[] = [];
    const c = consumer({
      clientId: "dedupe",
      topicPrefix: "dedupe",
      dedupeWindow: 10,
      onRecord: async (r) => {
        calls.push(r.model);
        if (r.model === "throws" && calls.filter((m) => m === "throws").length === 1) {
          throw new Error("handler bug");
        }
      },
    });
    await c.ready;
    const a = record(1, "a");
    await raw.publishAsync("dedupe/report", batchPayload(a), { qos: 1 });
    await raw.publishAsync("dedupe/report", batchPayload(a), { qos: 1 }); // a resend
    await raw.publishAsync("dedupe/report", Buffer.from([0xff, 0xff]), { qos: 1 });
    await raw.publishAsync("dedupe/report", batchPayload(record(2, "throws")), { qos: 1 });
    await waitUntil(
      () => c.stats().received === 4 && c.stats().pending === 0,
      10_000,
      "4 messages",
    );
    expect(calls).toEqual(["a", "throws", "throws"]);
    expect(c.stats()).toMatchObject({
      received: 4,
      records: 3,
      handled: 2,
      duplicates: 1,
      rejected: 1,
      failed: 1,
    });
  });

  it("asks the broker for no more unacknowledged messages than maxPendingMessages (receive maximum)", async () => {
    let running = 0;
    let most = 0;
    const c = consumer({
      clientId: "window",
      topicPrefix: "window",
      maxPendingMessages: 5,
      concurrency: 50,
      onRecord: async () => {
        most = Math.max(most, ++running);
        await sleep(20);
        running--;
      },
    });
    await c.ready;
    await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        raw.publishAsync("window/report", batchPayload(record(i)), { qos: 1 }),
      ),
    );
    await waitUntil(() => c.stats().handled === 40, 10_000, "40 records");
    expect(most).toBe(5);
  });

  it("says so when a second consumer takes its session over (same client id)", async () => {
    // The first one comes back slowly, so the second holds the session long enough to subscribe
    // even on a loaded machine (two fast reconnectors can take it from each other for seconds).
    const first = consumer({
      clientId: "twin",
      topicPrefix: "twin",
      onRecord: () => {},
      reconnectBaseMs: 2000,
      reconnectMaxMs: 4000,
    });
    await first.ready;
    const second = consumer({ clientId: "twin", topicPrefix: "twin", onRecord: () => {} });
    await second.ready;
    await waitUntil(
      () =>
        logs.some((l) => /take the session over .*: give each consumer its own clientId/.test(l)),
      5000,
      "the takeover warning",
    );
  });
});
