import { connectAsync } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createUsageConsumer, type UsageConsumer } from "../../src/consumer/index.js";
import { BillingClient, type UsageRecord } from "../../src/index.js";
import { until } from "../helpers/aedes-broker.js";
import { makePki, type TestPki } from "../helpers/certs.js";
import { batchPayload, tlsClientOptions } from "../helpers/fixtures.js";
import { Mosquitto } from "../helpers/mosquitto.js";
import { mosquittoAvailable } from "../helpers/require-broker.js";

const users = { svc: "svc-pass", backend: "backend-pass" };

describe.runIf(mosquittoAvailable())("createUsageConsumer (real mosquitto, TLS)", () => {
  let pki: TestPki;
  let broker: Mosquitto;
  const consumers: UsageConsumer[] = [];
  beforeAll(async () => {
    pki = makePki();
    broker = await Mosquitto.start({ pki, users, extra: ["max_inflight_messages 100"] });
  });
  afterAll(async () => {
    for (const c of consumers) await c.close();
    await broker?.close();
  });
  const conn = {
    brokerHost: "127.0.0.1",
    ca: "",
    username: "backend",
    password: users.backend,
    logger: () => {},
  };

  it("two consumers in one group split the records; each is handled exactly once", async () => {
    const handled: Array<{ by: number; record: UsageRecord }> = [];
    for (const by of [1, 2]) {
      const c = createUsageConsumer({
        ...conn,
        ca: pki.ca,
        brokerPort: broker.tlsPort,
        group: "split",
        onRecord: (record) => {
          handled.push({ by, record });
        },
      });
      consumers.push(c);
      await c.ready;
    }
    const producer = new BillingClient(tlsClientOptions(broker.tlsPort, pki.ca, "svc", users.svc));
    const ids = await Promise.all(
      Array.from({ length: 2000 }, (_, i) =>
        producer.reportUsage({ apiKey: "k", module: "llm", model: "m", usage: i }),
      ),
    );
    await producer.close();
    await until(() => handled.length >= 2000, 20_000, "2000 records handled");
    await new Promise((r) => setTimeout(r, 200)); // nothing more arrives
    expect(handled).toHaveLength(2000);
    expect(new Set(handled.map((h) => h.record.id))).toEqual(new Set(ids));
    const byOne = handled.filter((h) => h.by === 1).length;
    expect(byOne).toBeGreaterThan(0);
    expect(byOne).toBeLessThan(2000); // both took a share
  });

  it("drops duplicates by id within its window, and ignores garbage", async () => {
    const handled: string[] = [];
    const c = createUsageConsumer({
      ...conn,
      ca: pki.ca,
      brokerPort: broker.tlsPort,
      group: "dedupe",
      dedupeWindow: 10,
      onRecord: async (r) => {
        handled.push(r.id);
        if (r.model === "throws") throw new Error("handler bug");
      },
    });
    consumers.push(c);
    await c.ready;
    const { create } = await import("@bufbuild/protobuf");
    const { UsageRecordSchema } = await import("../../gen/billing/v1/usage_pb.js");
    const raw = await connectAsync({
      host: "127.0.0.1",
      port: broker.tlsPort,
      protocol: "mqtts",
      ca: pki.ca,
      username: "svc",
      password: users.svc,
    });
    const payload = (id: string, model = "m") =>
      batchPayload(create(UsageRecordSchema, { id, model }));
    await raw.publishAsync("billing/report", payload("a"), { qos: 1 });
    await raw.publishAsync("billing/report", payload("a"), { qos: 1 }); // a resend
    await raw.publishAsync("billing/report", Buffer.from([0xff, 0xff]), { qos: 1 });
    await raw.publishAsync("billing/report", payload("b", "throws"), { qos: 1 });
    await raw.endAsync();
    await until(() => c.stats().received === 4, 10_000, "4 payloads");
    expect(handled).toEqual(["a", "b"]);
    expect(c.stats()).toEqual({ received: 4, handled: 1, duplicates: 1, invalid: 1, failed: 1 });
  });

  it("refuses bad options", () => {
    expect(() => createUsageConsumer({ ...conn, onRecord: undefined as never })).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT", field: "onRecord" }),
    );
    expect(() => createUsageConsumer({ ...conn, group: "a/b", onRecord: () => {} })).toThrow(
      expect.objectContaining({ field: "group" }),
    );
    expect(() => createUsageConsumer({ ...conn, dedupeWindow: 0, onRecord: () => {} })).toThrow(
      expect.objectContaining({ field: "dedupeWindow" }),
    );
  });
});
