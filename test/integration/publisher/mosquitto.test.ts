import { fromBinary } from "@bufbuild/protobuf";
import { connectAsync, type IPublishPacket, type MqttClient } from "mqtt";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { HeartbeatSchema, ProducerState } from "../../../gen/billing/v1/usage_pb.js";
import { BillingClient, type BillingClientOptions, getBillingClient } from "../../../src/index.js";
import { makePki, type TestPki } from "../../helpers/certs.js";
import { decodeRecords, durableBackend, tlsClientOptions } from "../../helpers/fixtures.js";
import { Mosquitto } from "../../helpers/mosquitto.js";
import { mosquittoAvailable } from "../../helpers/require-broker.js";
import { sleep, waitUntil } from "../../helpers/time.js";

// A real mosquitto (started here on free ports, with TLS and a password file) and a backend
// subscriber on its plain listener, counting what actually went through the broker.
const users = { svc: "svc-pass", backend: "backend-pass", reader: "reader-pass" };

describe.runIf(mosquittoAvailable())("against a real mosquitto (TLS + password)", () => {
  let pki: TestPki;
  let broker: Mosquitto;
  let backend: MqttClient;
  let packets: IPublishPacket[] = [];

  beforeAll(async () => {
    pki = makePki();
    broker = await Mosquitto.start({
      pki,
      users,
      plain: true,
      // "reader" may not publish usage: the broker answers its records with PUBACK 0x87.
      acl: "user svc\ntopic readwrite billing/#\nuser backend\ntopic readwrite billing/#\nuser reader\ntopic read billing/#\ntopic write billing/keys/request\ntopic write billing/heartbeat\n",
      extra: [
        "max_inflight_messages 100",
        // A record over this size is refused (PUBACK 0x95), the others go through.
        "message_size_limit 4000",
      ],
    });
    backend = await connectAsync({
      host: "127.0.0.1",
      port: broker.plainPort,
      protocolVersion: 5,
      username: "backend",
      password: users.backend,
    });
    backend.on("message", (_t, _p, packet) => packets.push(packet));
    await backend.subscribeAsync("billing/#", { qos: 1 });
  });
  afterAll(async () => {
    await backend?.endAsync();
    await broker?.close();
  });
  afterEach(async () => {
    await getBillingClient()
      ?.close(500)
      .catch(() => {});
    packets = [];
  });

  const options = (extra: BillingClientOptions = {}) =>
    tlsClientOptions(broker.tlsPort, pki.ca, "svc", users.svc, extra);
  const reports = () => packets.filter((p) => p.topic === "billing/report");

  it("publishes over verified TLS with MQTT 5: content type and message-type property", async () => {
    const client = new BillingClient(options());
    await client.connect();
    expect(client.stats().protocolVersion).toBe(5);
    const id = await client.reportUsage({ apiKey: "k", module: "llm", model: "m", usage: 7 });
    await client.flush(5000);
    await waitUntil(() => reports().length === 1, 5000, "delivery");
    const [packet] = reports();
    expect(packet?.qos).toBe(1);
    expect(packet?.properties?.contentType).toBe("application/x-protobuf");
    expect(packet?.properties?.userProperties).toEqual({
      "message-type": "billing.v1.UsageBatch",
    });
    expect(decodeRecords([packet?.payload as Buffer])[0]?.id).toBe(id);
    // The key-list request went out too, after the subscription.
    await waitUntil(() => packets.some((p) => p.topic === "billing/keys/request"), 5000, "request");
  });

  it("speaks MQTT 3.1.1 when asked", async () => {
    const client = new BillingClient(options({ protocolVersion: 4 }));
    await client.connect();
    expect(client.stats().protocolVersion).toBe(4);
    await client.reportUsage({ apiKey: "k", module: "llm", model: "m", usage: 7 });
    await client.flush(5000);
    await waitUntil(() => reports().length === 1, 5000, "delivery");
    expect(reports()[0]?.properties?.contentType).toBeUndefined();
  });

  for (const [name, extra, code] of [
    ["a wrong CA", (): BillingClientOptions => ({ ca: makePki().ca }), "TLS"],
    ["a wrong host name", (): BillingClientOptions => ({ servername: "evil.invalid" }), "TLS"],
    [
      "a wrong password (MQTT 5)",
      (): BillingClientOptions => ({ password: "x" }),
      "NOT_AUTHORIZED",
    ],
    [
      "a wrong password (MQTT 3.1.1)",
      (): BillingClientOptions => ({ password: "x", protocolVersion: 4 }),
      "NOT_AUTHORIZED",
    ],
  ] as const) {
    it(`refuses ${name} with ${code}`, async () => {
      const client = new BillingClient(options(extra()));
      await expect(client.connect()).rejects.toMatchObject({ code });
      await client.close(0);
    });
  }

  it("a PUBACK with a failure reason code (0x87, not authorized) is a failure, retried", async () => {
    const client = new BillingClient(
      options({ username: "reader", password: users.reader, reconnectBaseMs: 20 }),
    );
    await client.connect();
    await client.reportUsage({ apiKey: "k", module: "llm", model: "m", usage: 1 });
    await waitUntil(() => client.stats().failed >= 2, 10_000, "refusals, retried");
    expect(client.stats()).toMatchObject({ published: 0, queued: 1 });
    expect(reports()).toHaveLength(0);
  });

  // mosquitto answers a record over message_size_limit with PUBACK 0x95, which is not a valid
  // PUBACK code: mqtt.js fails to parse it and the connection drops, again and again.
  it("a record the broker cannot take is retried apart, without blocking the others", async () => {
    const client = new BillingClient(options({ reconnectBaseMs: 100, reconnectMaxMs: 2000 }));
    await client.connect();
    const small = async (usage: number) =>
      client.reportUsage({ apiKey: "k", module: "llm", model: "m", usage });
    const ids = [await small(1)];
    await client.reportUsage({
      apiKey: "k",
      module: "llm",
      model: "m",
      usage: 2,
      metadata: { blob: "x".repeat(5000) },
    });
    for (let i = 3; i <= 50; i++) ids.push(await small(i));
    // Records in flight when the connection dropped are sent again: duplicates carry the same id.
    const arrived = () =>
      new Set(decodeRecords(reports().map((p) => p.payload as Buffer)).map((r) => r.id));
    expect(ids).toHaveLength(49);
    await waitUntil(() => arrived().size === 49, 20_000, "the others");
    expect(arrived()).toEqual(new Set(ids));
    await waitUntil(() => client.stats().published === 49, 20_000, "all others acknowledged");
    const stats = client.stats();
    expect(stats.published).toBe(49);
    expect(stats.failed).toBeGreaterThanOrEqual(3);
    expect(stats.queued).toBe(1); // never dropped
    await expect(client.flush(100)).rejects.toMatchObject({ code: "TIMEOUT" });
  });

  it("a record that drops the connection every time it is sent alone is held as undeliverable: the churn stops", async () => {
    const logs: string[] = [];
    const client = new BillingClient(
      options({
        reconnectBaseMs: 50,
        reconnectMaxMs: 200,
        logger: (level, message) => logs.push(`${level}: ${message}`),
      }),
    );
    await client.connect();
    const blob = { blob: "x".repeat(5000) };
    for (let i = 0; i < 3; i++) {
      await client.reportUsage({
        apiKey: "k",
        module: "llm",
        model: "m",
        usage: i,
        metadata: blob,
      });
    }
    await client.reportUsage({ apiKey: "k", module: "llm", model: "m", usage: 9 });
    await waitUntil(() => client.stats().undeliverable === 3, 30_000, "all three held apart");
    // The last of them dropped the connection: the client reconnects once more, then stays.
    await waitUntil(() => client.isConnected(), 5000, "reconnected");
    const held = client.stats();
    expect(held).toMatchObject({ published: 1, queued: 3, undeliverable: 3, retrying: 0 });
    expect(logs.filter((l) => /^error: .*held as undeliverable/.test(l))).toHaveLength(3);
    // No more connection drops (nor wills) once they are held.
    const wills = () =>
      packets.filter(
        (p) =>
          p.topic === "billing/heartbeat" &&
          fromBinary(HeartbeatSchema, p.payload as Buffer).state === ProducerState.LOST,
      ).length;
    const willsThen = wills();
    await sleep(1500);
    expect(client.stats().reconnects).toBe(held.reconnects);
    expect(wills()).toBe(willsThen);
    // They are still pending, and close() says so.
    await expect(client.close(200)).rejects.toThrow(/closed with 3 usage records not acknowledged/);
  });

  it("a broker frozen past the keepalive: in-flight records go back in order, none taken for a refusal, all arrive", async () => {
    const frozen = await Mosquitto.start({ users, extra: ["max_inflight_messages 100"] });
    const logs: string[] = [];
    const seen = new Set<string>();
    const sub = await connectAsync({
      host: "127.0.0.1",
      port: frozen.plainPort,
      protocolVersion: 5,
      username: "backend",
      password: users.backend,
      clean: false,
      clientId: "backend-frozen",
      properties: { sessionExpiryInterval: 600 },
      reconnectPeriod: 100,
    });
    sub.on("message", (_t, payload) => {
      for (const r of decodeRecords([payload])) seen.add(r.id);
    });
    await sub.subscribeAsync("billing/report", { qos: 1 });
    const client = new BillingClient({
      brokerHost: "127.0.0.1",
      brokerPort: frozen.plainPort,
      tls: false,
      username: "svc",
      password: users.svc,
      keepaliveSeconds: 1,
      heartbeatIntervalMs: 0,
      reconnectBaseMs: 50,
      reconnectMaxMs: 500,
      logger: (level, message) => logs.push(`${level}: ${message}`),
    });
    try {
      await client.connect();
      const ids: string[] = [];
      const report = async (n: number) => {
        for (let i = 0; i < n; i++) {
          ids.push(await client.reportUsage({ apiKey: "k", module: "llm", model: "m", usage: i }));
        }
      };
      await report(20);
      frozen.pause();
      await report(30); // in flight into a frozen broker
      await waitUntil(() => logs.some((l) => l.includes("connection lost")), 10_000, "keepalive");
      frozen.resume();
      await waitUntil(() => seen.size === 50, 20_000, "all 50 at the backend");
      expect(new Set(ids)).toEqual(seen);
      await client.flush(10_000);
      expect(client.stats()).toMatchObject({ retrying: 0, queued: 0 });
      expect(logs.filter((l) => l.includes("refused"))).toEqual([]);
    } finally {
      await client.close(500).catch(() => {});
      await sub.endAsync();
      await frozen.close();
    }
  });

  it("survives mosquitto restarts mid-stream: every record arrives at the backend", async () => {
    // The broker persists its queue across a clean stop, so the backend's persistent session
    // keeps what was acknowledged while the backend was cut off too.
    const durable = await Mosquitto.start({
      pki,
      users,
      plain: true,
      persistent: true,
    });
    const seen = new Set<string>();
    const sub = await durableBackend(durable.plainPort, "backend-durable", users.backend, (r) =>
      seen.add(r.id),
    );
    const client = new BillingClient(options({ brokerPort: durable.tlsPort, inFlightWindow: 50 }));
    await client.connect();
    const ids = new Set<string>();
    try {
      for (let i = 0; i < 3000; i++) {
        ids.add(await client.reportUsage({ apiKey: "k", module: "llm", model: "m", usage: i }));
        if (i === 1000 || i === 2000) {
          await durable.stop("SIGTERM");
          await durable.start();
          // Each restart is a real mid-stream outage: wait until the client is back before the next.
          await waitUntil(() => client.isConnected(), 10_000, "reconnected");
        }
        if (i % 50 === 0) await new Promise((r) => setImmediate(r));
      }
      await client.flush(30_000);
      await waitUntil(
        () => seen.size === ids.size,
        30_000,
        `all ${ids.size} ids (have ${seen.size})`,
      );
      expect(seen).toEqual(ids);
      expect(client.stats().reconnects).toBeGreaterThanOrEqual(2);
    } finally {
      await client.close(1000).catch(() => {});
      await sub.endAsync(true);
      await durable.close();
    }
  });
});
