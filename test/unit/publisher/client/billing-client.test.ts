import { fromBinary } from "@bufbuild/protobuf";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  HeartbeatSchema,
  KeyListRequestSchema,
  KeyState,
  ProducerState,
} from "../../../../gen/billing/v1/usage_pb.js";
import {
  BillingClient,
  type BillingClientOptions,
  BillingError,
  getBillingClient,
  hashApiKey,
  reportUsage,
} from "../../../../src/index.js";
import { AedesBroker } from "../../../helpers/aedes-broker.js";
import {
  decodeRecords,
  keyUpdate,
  plainClientOptions,
  testPublicKeys,
} from "../../../helpers/fixtures.js";
import { freePort } from "../../../helpers/mosquitto.js";
import { sleep, waitUntil } from "../../../helpers/time.js";

let broker: AedesBroker;
const logs: string[] = [];
const quiet = (level: string, msg: string) => logs.push(`${level}: ${msg}`);

beforeAll(async () => {
  broker = await AedesBroker.create();
});
afterAll(async () => broker.close());
afterEach(async () => {
  await getBillingClient()
    ?.close(100)
    .catch(() => {});
  logs.length = 0;
  broker.published.length = 0;
  await broker.start();
});

function options(extra: BillingClientOptions = {}): BillingClientOptions {
  return plainClientOptions(broker.port, {
    logger: quiet,
    keyUpdatePublicKeys: testPublicKeys,
    ...extra,
  });
}

const report = (client: BillingClient, usage: number | bigint = 1, extra = {}) =>
  client.reportUsage({ apiKey: "key-1", module: "llm", model: "gpt-4", usage, ...extra });

const received = () => decodeRecords(broker.payloads("billing/report"));

describe("publishing", () => {
  it("publishes typed records at QoS 1 with id, time, fingerprint, app id and producer", async () => {
    const client = new BillingClient(options({ clientId: "svc-1" }));
    await client.connect();
    await waitUntil(() => broker.payloads("billing/keys/request").length === 1, 5000, "subscribed");
    await broker.publish(
      "billing/keys/update",
      keyUpdate([{ key: "key-1", state: KeyState.ACTIVE, appId: "app-9" }], true),
    );
    await waitUntil(() => client.keys.loaded, 5000, "key snapshot");
    const before = Date.now();
    const id = await report(client, 150, { metadata: { temperature: 0.7, tags: ["a"] } });
    await client.flush(5000);
    const [rec] = received();
    expect(rec?.id).toBe(id);
    expect(rec?.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7/);
    expect(rec?.apiKeySha256).toBe(hashApiKey("key-1"));
    expect(rec?.appId).toBe("app-9");
    expect(rec?.usage).toBe(150n);
    expect(rec?.producer).toBe("svc-1");
    expect(rec?.metadata).toEqual({ temperature: 0.7, tags: ["a"] });
    const at = Number(rec?.occurredAt?.seconds) * 1000 + (rec?.occurredAt?.nanos ?? 0) / 1e6;
    expect(at).toBeGreaterThanOrEqual(before - 1);
    expect(at).toBeLessThanOrEqual(Date.now());
    // The raw key never reaches the broker, in any payload.
    for (const p of broker.published) expect(p.payload.includes("key-1")).toBe(false);
    expect(client.stats()).toMatchObject({ published: 1, queued: 0, failed: 0, rejected: 0 });
  });

  it("falls back to MQTT 3.1.1 when the broker refuses 5 (Aedes does)", async () => {
    const client = new BillingClient(options());
    await client.connect();
    expect(client.stats().protocolVersion).toBe(4);
    expect(logs.join("\n")).toContain("refused MQTT 5: trying MQTT 3.1.1 with this broker");
    // A warning: a 3.1.1 broker cannot say "no subscriber", so what it drops goes unseen.
    expect(logs.filter((l) => l.startsWith("warn: running on MQTT 3.1.1"))).toHaveLength(1);
  });

  it("accepts a UsageRecord built with create(), keeping its id and time", async () => {
    const { create } = await import("@bufbuild/protobuf");
    const { UsageRecordSchema } = await import("../../../../gen/billing/v1/usage_pb.js");
    const client = new BillingClient(options({ clientId: "svc-create" }));
    await client.connect();
    const id = "01890a5d-ac96-774b-bcce-b302099a8057";
    const got = await client.reportUsage(
      create(UsageRecordSchema, {
        id,
        apiKeySha256: hashApiKey("k"),
        module: "tts",
        model: "voice",
        usage: 12n,
        occurredAt: { seconds: 1_700_000_000n, nanos: 0 },
      }),
    );
    expect(got).toBe(id);
    await client.flush(5000);
    const [rec] = received();
    expect(rec?.id).toBe(id);
    expect(rec?.occurredAt?.seconds).toBe(1_700_000_000n);
    expect(rec?.producer).toBe("svc-create"); // an empty producer is filled in
    // An empty id is filled in, on a copy: the caller's message is left as it was.
    const mine = create(UsageRecordSchema, {
      apiKeySha256: hashApiKey("k"),
      module: "tts",
      model: "v",
    });
    const fresh = await client.reportUsage(mine);
    expect(fresh).toMatch(/^[0-9a-f]{8}-/);
    expect(mine.id).toBe("");
    expect(mine.occurredAt).toBeUndefined();
    await expect(
      client.reportUsage(
        create(UsageRecordSchema, { apiKeySha256: "nothex", module: "a", model: "b" }),
      ),
    ).rejects.toMatchObject({ code: "INVALID_ARGUMENT", field: "apiKeySha256" });
    await expect(
      client.reportUsage(
        create(UsageRecordSchema, {
          id: "x",
          apiKeySha256: hashApiKey("k"),
          module: "a",
          model: "b",
        }),
      ),
    ).rejects.toMatchObject({ code: "INVALID_ARGUMENT", field: "id" });
  });

  it("queues while the broker is down at start, retries, and sends everything in order", async () => {
    const port = await freePort();
    const late = await AedesBroker.create();
    await late.stop();
    late.port = port;
    const client = new BillingClient(options({ brokerPort: port }));
    const ids: string[] = [];
    for (let i = 0; i < 50; i++) ids.push(await report(client, i));
    expect(client.isConnected()).toBe(false);
    expect(client.stats().queued).toBe(50);
    await sleep(300); // a few failed attempts
    await late.start();
    await client.flush(10_000);
    const got = decodeRecords(late.payloads("billing/report"));
    expect(got.map((r) => r.id)).toEqual(ids);
    expect(got.map((r) => Number(r.usage))).toEqual(ids.map((_, i) => i));
    expect(logs.some((l) => l.startsWith("warn: connection attempt failed: [UNREACHABLE]"))).toBe(
      true,
    );
    await client.close();
    await late.close();
  });

  it("survives the broker stopping and restarting mid-stream: every record arrives", async () => {
    const client = new BillingClient(options({ inFlightWindow: 64 }));
    await client.connect();
    const ids = new Set<string>();
    for (let i = 0; i < 3000; i++) {
      ids.add(await report(client, i));
      if (i === 1000 || i === 2000) {
        await broker.stop();
        await sleep(100);
        await broker.start();
        await waitUntil(() => client.isConnected(), 5000, "reconnected");
      }
      if (i % 100 === 0) await new Promise((r) => setImmediate(r));
    }
    await client.flush(20_000);
    // Aedes writes a QoS 1 PUBACK before it publishes, and when the socket is backed up it
    // publishes only after "drain": the last records reach subscribers just after their PUBACK.
    await waitUntil(
      () => new Set(received().map((r) => r.id)).size >= ids.size,
      5000,
      "all records",
    );
    const got = received().map((r) => r.id);
    expect(new Set(got)).toEqual(ids); // duplicates may happen (same id); losses may not
    expect(client.stats().reconnects).toBeGreaterThanOrEqual(2);
    expect(client.stats().queued).toBe(0);
  });

  it("refuses with QUEUE_FULL past maxQueued, counted, and keeps what it had", async () => {
    const client = new BillingClient(options({ brokerPort: await freePort(), maxQueued: 3 }));
    for (let i = 0; i < 3; i++) await report(client, i);
    await expect(report(client, 3)).rejects.toMatchObject({ code: "QUEUE_FULL" });
    expect(client.stats()).toMatchObject({ queued: 3, rejected: 1 });
  });

  it("flush times out saying how many remain; close then rejects and unregisters", async () => {
    const client = new BillingClient(options({ brokerPort: await freePort() }));
    await report(client);
    await report(client);
    await expect(client.flush(50)).rejects.toThrow(/2 records not yet acknowledged/);
    const closing = client.close(50);
    expect(client.close()).toBe(closing);
    expect(getBillingClient()).toBeUndefined();
    await expect(closing).rejects.toMatchObject({ code: "TIMEOUT" });
    expect(logs.some((l) => l.startsWith("error: closed with 2 usage records"))).toBe(true);
    await expect(report(client)).rejects.toMatchObject({ code: "CLOSED" });
    await expect(client.connect()).rejects.toMatchObject({ code: "CLOSED" });
  });

  it("close flushes, says goodbye with a STOPPED heartbeat and disconnects", async () => {
    const client = new BillingClient(options({ clientId: "closer" }));
    await client.connect();
    for (let i = 0; i < 100; i++) await report(client, i);
    await client.close();
    expect(received()).toHaveLength(100);
    const beats = broker.payloads("billing/heartbeat").map((p) => fromBinary(HeartbeatSchema, p));
    expect(beats.at(-1)?.state).toBe(ProducerState.STOPPED);
    expect(beats.at(-1)?.published).toBe(100n);
    expect(client.isConnected()).toBe(false);
  });

  it("sends heartbeats with counters, and the broker sends the will on an unclean loss", async () => {
    const client = new BillingClient(options({ heartbeatIntervalMs: 30, clientId: "beater" }));
    await client.connect();
    await report(client);
    await client.flush(5000);
    await waitUntil(() => broker.payloads("billing/heartbeat").length >= 2, 5000, "heartbeats");
    const beat = fromBinary(HeartbeatSchema, broker.payloads("billing/heartbeat").at(-1) as Buffer);
    expect(beat).toMatchObject({ producer: "beater", state: ProducerState.RUNNING, published: 1n });
    // The broker drops the connection without a DISCONNECT from the client: the will goes out.
    const wills: Buffer[] = [];
    broker.broker.subscribe(
      "billing/heartbeat",
      (packet, cb) => {
        wills.push(packet.payload as Buffer);
        cb();
      },
      () => {},
    );
    for (const c of Object.values((broker.broker as unknown as { clients: object }).clients)) {
      (c as { conn: { destroy(): void } }).conn.destroy();
    }
    await waitUntil(
      () => wills.some((w) => fromBinary(HeartbeatSchema, w).state === ProducerState.LOST),
      5000,
      "will",
    );
  });
});

describe("no work that multiplies across reconnects (the Python SDK's flaw 2)", () => {
  it("heartbeats keep their rate after several reconnects", async () => {
    const client = new BillingClient(options({ heartbeatIntervalMs: 50 }));
    await client.connect();
    const requests = () => broker.payloads("billing/keys/request").length;
    await waitUntil(() => requests() === 1, 5000, "first key request");
    for (let i = 0; i < 3; i++) {
      await broker.stop();
      await broker.start();
      // One key-list request per connection: the subscription is made again each time.
      await waitUntil(() => requests() === i + 2, 5000, "key request after reconnect");
    }
    expect(client.stats().reconnects).toBe(3);
    const before = broker.payloads("billing/heartbeat").length;
    await sleep(500);
    const beats = broker.payloads("billing/heartbeat").length - before;
    expect(beats).toBeGreaterThanOrEqual(5);
    expect(beats).toBeLessThanOrEqual(12); // ~10 at 50 ms; 40 if four timers ran
    expect(requests()).toBe(4);
  });
});

describe("key sync", () => {
  it("subscribes and asks for a snapshot after every (re)connect", async () => {
    const client = new BillingClient(options({ clientId: "asker" }));
    await client.connect();
    await waitUntil(() => broker.payloads("billing/keys/request").length === 1, 5000, "request");
    const req = fromBinary(
      KeyListRequestSchema,
      broker.payloads("billing/keys/request")[0] as Buffer,
    );
    expect(req.producer).toBe("asker");
    await broker.stop();
    await broker.start();
    await waitUntil(
      () => broker.payloads("billing/keys/request").length === 2,
      5000,
      "2nd request",
    );
    expect(client.stats().reconnects).toBe(1);
  });

  it("applies snapshots and deltas; ignores garbage, counted, keeping the list", async () => {
    const client = new BillingClient(options());
    await client.connect();
    await waitUntil(() => broker.payloads("billing/keys/request").length === 1, 5000, "subscribed");
    expect(client.stats().keysLoaded).toBe(false);
    await broker.publish(
      "billing/keys/update",
      keyUpdate(
        [
          { key: "good", state: KeyState.ACTIVE, appId: "a1" },
          { key: "bad", state: KeyState.ACTIVE, appId: "a2" },
        ],
        true,
      ),
    );
    await waitUntil(() => client.keys.loaded, 5000, "snapshot");
    expect(client.keys.lookup("good")?.appId).toBe("a1");
    await broker.publish(
      "billing/keys/update",
      keyUpdate([{ key: "bad", state: KeyState.BLOCKED, reason: "unpaid" }], false),
    );
    await waitUntil(() => client.keys.lookup("bad")?.state === KeyState.BLOCKED, 5000, "delta");
    await broker.publish("billing/keys/update", Buffer.from([0xff, 0xff, 0xff, 0x0f]));
    await waitUntil(
      () => client.stats().keyUpdatesRefused.undecodable === 1,
      5000,
      "garbage counted",
    );
    expect(client.keys.size).toBe(2);
    expect(logs.some((l) => l.includes("not a SignedKeyUpdate"))).toBe(true);
    await broker.publish("billing/keys/update", keyUpdate([], true));
    await waitUntil(() => client.keys.size === 0, 5000, "revoking snapshot");
    expect(client.stats().keyUpdates).toBe(3);
  });
});

describe("validation: a rejected call changes nothing", () => {
  const cases: Array<[string, Record<string, unknown>]> = [
    ["apiKey", { apiKey: "" }],
    ["apiKey", { apiKey: 42 }],
    ["apiKey", { apiKey: "k".repeat(1025) }],
    ["module", { module: "" }],
    ["module", { module: "x".repeat(129) }],
    ["module", { module: "ll\nm" }],
    ["model", { model: undefined }],
    ["model", { model: "a\u0085b" }],
    ["usage", { usage: -1 }],
    ["usage", { usage: 1.5 }],
    ["usage", { usage: Number.NaN }],
    ["usage", { usage: "150" }],
    ["usage", { usage: 2 ** 53 }],
    ["usage", { usage: 2n ** 64n }],
    ["usage", { usage: -1n }],
    ["metadata", { metadata: [] }],
    ["metadata", { metadata: "x" }],
    ["metadata.f", { metadata: { f: () => 1 } }],
    ["metadata.s", { metadata: { s: Symbol("x") } }],
    ["metadata.b", { metadata: { b: 1n } }],
    ["metadata.d", { metadata: { d: new Date() } }],
    ["metadata.u", { metadata: { u: undefined } }],
    ["metadata.n", { metadata: { n: Number.POSITIVE_INFINITY } }],
    ["metadata.a[1]", { metadata: { a: [1, () => 2] } }],
    ["metadata.big", { metadata: { big: "x".repeat(40_000) } }],
  ];
  for (const [field, patch] of cases) {
    it(`${field}: ${String(Object.values(patch)[0]).slice(0, 20)}`, async () => {
      const client = new BillingClient(options({ brokerPort: await freePort() }));
      const err = await client
        .reportUsage({ apiKey: "k", module: "llm", model: "m", usage: 1, ...patch } as never)
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BillingError);
      expect(err).toMatchObject({ code: "INVALID_ARGUMENT", field });
      expect(client.stats()).toMatchObject({ queued: 0, rejected: 1 });
    });
  }

  it("cycles, depth and symbol keys", async () => {
    const client = new BillingClient(options({ brokerPort: await freePort() }));
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    let deep: Record<string, unknown> = {};
    for (let i = 0; i < 40; i++) deep = { d: deep };
    const base = { apiKey: "k", module: "llm", model: "m", usage: 1 };
    let shared: unknown = 1;
    for (let i = 0; i < 20; i++) shared = [shared, shared]; // 2^20 values when walked
    for (const metadata of [cyclic, deep, { [Symbol("s")]: 1 }, null, new Map(), { shared }]) {
      await expect(client.reportUsage({ ...base, metadata } as never)).rejects.toMatchObject({
        code: "INVALID_ARGUMENT",
      });
    }
    await expect(client.reportUsage(null as never)).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
    });
    // Shared (non-cyclic) references and null-prototype objects are fine.
    const same = { x: 1 };
    const bare = Object.assign(Object.create(null), { y: 2 });
    await client.reportUsage({ ...base, metadata: { a: same, b: same, c: bare } });
    await client.reportUsage({ ...base, usage: 2n ** 64n - 1n });
    expect(client.stats()).toMatchObject({ queued: 2, rejected: 7 });
  });
});

describe("the singleton", () => {
  it("equal options give the same instance; different ones throw; close unregisters", async () => {
    await expect(
      reportUsage({ apiKey: "k", module: "a", model: "b", usage: 1 }),
    ).rejects.toMatchObject({ code: "NOT_INITIALIZED" });
    const opts = options({ clientId: "one" });
    const a = new BillingClient(opts);
    expect(new BillingClient({ ...opts })).toBe(a);
    expect(getBillingClient()).toBe(a);
    expect(() => new BillingClient({ ...opts, topicPrefix: "other" })).toThrow(
      expect.objectContaining({ code: "ALREADY_INITIALIZED" }),
    );
    await a.connect();
    await reportUsage({ apiKey: "k", module: "a", model: "b", usage: 1 });
    await a.close();
    expect(getBillingClient()).toBeUndefined();
    const b = new BillingClient({ ...opts, topicPrefix: "other" });
    expect(b).not.toBe(a);
    await b.close();
  });

  it("invalid options throw and register nothing", () => {
    expect(() => new BillingClient({ brokerPort: -1 })).toThrow(BillingError);
    expect(getBillingClient()).toBeUndefined();
  });

  it("warns loudly when TLS verification is turned off", async () => {
    const c = new BillingClient(
      options({ tls: true, dangerouslyDisableTlsVerification: true, brokerPort: await freePort() }),
    );
    expect(logs.some((l) => l.startsWith("warn: TLS certificate verification is OFF"))).toBe(true);
    await c.close(0);
  });
});
