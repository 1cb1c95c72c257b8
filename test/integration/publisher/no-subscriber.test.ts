import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import { connectAsync, type MqttClient, type Packet } from "mqtt";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { HeartbeatSchema } from "../../../gen/billing/v1/usage_pb.js";
import { createUsageConsumer, type UsageConsumer } from "../../../src/consumer/index.js";
import { BillingClient, BillingError } from "../../../src/index.js";
import { instrumentClient } from "../../../src/otel/index.js";
import { SqliteSpool } from "../../../src/spool/index.js";
import { usageRecord } from "../../helpers/consumer-fixture.js";
import { batchPayload, plainClientOptions } from "../../helpers/fixtures.js";
import { metricValue, testMeterProvider } from "../../helpers/metrics-reader.js";
import { Mosquitto } from "../../helpers/mosquitto.js";
import { mosquittoAvailable } from "../../helpers/require-broker.js";
import { waitUntil } from "../../helpers/time.js";

// An MQTT 5 broker answers a QoS 1 publish that matches no subscription with PUBACK reason 0x10
// (No matching subscribers) and drops the message; mqtt.js calls that a success. On
// <prefix>/report it means "not delivered": the records stay queued until a subscriber exists.
describe.runIf(mosquittoAvailable())("PUBACK 0x10 on the report topic (real mosquitto)", () => {
  let broker: Mosquitto;
  const clients: BillingClient[] = [];
  const consumers: UsageConsumer[] = [];
  const logs: string[] = [];
  beforeAll(async () => {
    // Persistence on, as in a deployment: mosquitto still forgets shared subscriptions.
    broker = await Mosquitto.start({ persistent: true });
  });
  afterEach(async () => {
    for (const c of consumers.splice(0)) await c.close();
    for (const c of clients.splice(0)) await c.close(500).catch(() => {});
    logs.length = 0;
  });
  afterAll(async () => {
    await broker?.close();
  });

  const producer = (topicPrefix: string, heartbeatIntervalMs = 0, spool?: string) => {
    const c = new BillingClient(
      plainClientOptions(broker.plainPort, {
        topicPrefix,
        heartbeatIntervalMs,
        ...(spool === undefined ? {} : { spool: new SqliteSpool({ path: spool }) }),
        maxQueued: 100_000,
        logger: (level, message) => logs.push(`${level}: ${message}`),
      }),
    );
    clients.push(c);
    return c;
  };
  /** The real consumer on `topicPrefix`, counting each record id it is given. */
  const consumer = (topicPrefix: string, seen: Map<string, number>, group?: string) => {
    const c = createUsageConsumer({
      brokerHost: "127.0.0.1",
      brokerPort: broker.plainPort,
      tls: false,
      topicPrefix,
      clientId: `ingest-${topicPrefix}`,
      reconnectBaseMs: 50,
      reconnectMaxMs: 200,
      logger: () => {},
      ...(group === undefined ? {} : { group }),
      onRecord: (r) => {
        seen.set(r.id, (seen.get(r.id) ?? 0) + 1);
      },
    });
    consumers.push(c);
    return c;
  };
  const report = async (client: BillingClient, n: number) => {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      ids.push(await client.reportUsage({ apiKey: "k", module: "llm", model: "m", usage: i + 1 }));
    }
    return ids;
  };

  it("with no subscriber: nothing is counted published, flush() times out naming 0x10, once warned; counted in stats, heartbeat and OTel", async () => {
    // Heartbeats only: a subscription to nosub-a/# would be a subscriber of the report topic.
    const watcher = await connectAsync({
      host: "127.0.0.1",
      port: broker.plainPort,
      protocolVersion: 5,
      reconnectPeriod: 0,
    });
    const beats: bigint[] = [];
    watcher.on("message", (_t, payload) => {
      beats.push(fromBinary(HeartbeatSchema, payload).heldNoSubscriber);
    });
    await watcher.subscribeAsync("nosub-a/heartbeat", { qos: 0 });
    const otel = testMeterProvider();
    const client = producer("nosub-a", 100);
    const metrics = instrumentClient(client, { meterProvider: otel.meterProvider });
    await client.connect(5000);
    await report(client, 2000);
    const flushed = await client.flush(1500).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(flushed).toBeInstanceOf(BillingError);
    expect((flushed as BillingError).code).toBe("TIMEOUT");
    expect((flushed as BillingError).message).toMatch(
      /^\[TIMEOUT\] 2000 records not yet acknowledged after 1500 ms: no subscriber on nosub-a\/report since .*PUBACK reason 0x10/,
    );
    const s = client.stats();
    expect(s.published).toBe(0);
    expect(s.queued).toBe(2000);
    expect(s.heldNoSubscriber).toBeGreaterThan(0); // the batches sent before the first 0x10
    // One warning for the episode, however many batches came back with 0x10.
    const warnings = logs.filter((l) => l.includes("PUBACK reason 0x10"));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^warn: no subscriber on nosub-a\/report: .*billing-sdk ingest/);
    const held = s.heldNoSubscriber;
    await waitUntil(
      () => beats.some((b) => b === BigInt(held)),
      3000,
      "a heartbeat with the count",
    );
    expect(metricValue(await otel.collect(), "billing.publisher.held_no_subscriber.records")).toBe(
      client.stats().heldNoSubscriber,
    );
    metrics.stop();
    await otel.shutdown();
    await watcher.endAsync();
    // close() without a spool: rejected, the cause named.
    await expect(client.close(300)).rejects.toThrow(
      /closed with 2000 usage records not acknowledged within 300 ms: no subscriber on nosub-a\/report/,
    );
  });

  it("5,000 records with no subscriber, the consumer started 3 s later: all arrive, each once", async () => {
    const client = producer("nosub-b");
    await client.connect(5000);
    const ids = await report(client, 5000);
    await new Promise((r) => setTimeout(r, 3000));
    expect(client.stats().published).toBe(0);
    const seen = new Map<string, number>();
    await consumer("nosub-b", seen).ready;
    await client.flush(20_000);
    await waitUntil(() => seen.size >= 5000, 10_000, "5,000 records at the consumer");
    await new Promise((r) => setTimeout(r, 300)); // anything sent twice would show by now
    expect(new Set(seen.keys())).toEqual(new Set(ids));
    expect([...seen.values()].every((n) => n === 1)).toBe(true);
    const s = client.stats();
    expect(s.published).toBe(5000);
    expect(s.queued).toBe(0);
    expect(s.heldNoSubscriber).toBeGreaterThan(0);
    expect(logs.some((l) => /^info: nosub-b\/report has a subscriber again after/.test(l))).toBe(
      true,
    );
  });

  it("with a spool: the records answered 0x10 stay in it through close(), and go at the next start", async () => {
    const dir = mkdtempSync(join(tmpdir(), "billing-nosub-"));
    try {
      const path = join(dir, "spool.db");
      const first = producer("nosub-d", 0, path);
      await first.connect(5000);
      const ids = await report(first, 300);
      await waitUntil(() => first.stats().heldNoSubscriber > 0, 5000, "a 0x10");
      await first.close(500); // with a spool a close that runs out of time resolves
      const kept = new SqliteSpool({ path });
      expect(kept.count()).toBe(300);
      kept.close();
      expect(
        logs.some((l) =>
          /^warn: 300 records stay in the spool and go out at the next start \(no subscriber on nosub-d\/report since .*PUBACK reason 0x10/.test(
            l,
          ),
        ),
      ).toBe(true);
      const seen = new Map<string, number>();
      await consumer("nosub-d", seen).ready;
      const second = producer("nosub-d", 0, path);
      await second.flush(10_000);
      await waitUntil(() => seen.size >= 300, 5000, "300 records at the consumer");
      expect(new Set(seen.keys())).toEqual(new Set(ids));
      await second.close(2000);
      const left = new SqliteSpool({ path });
      expect(left.count()).toBe(0);
      left.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("records queued for an offline group member survive a broker restart (persistence) and reach it when it is back", async () => {
    const seen = new Map<string, number>();
    const member = consumer("nosub-e", seen, "g");
    await member.ready;
    await member.close(); // its session stays, with the shared subscription
    consumers.splice(consumers.indexOf(member), 1);
    const client = producer("nosub-e");
    await client.connect(5000);
    const ids = await report(client, 500);
    await client.flush(5000); // taken by the broker for the member's session, not 0x10
    expect(client.stats().heldNoSubscriber).toBe(0);
    await broker.stop("SIGTERM"); // a clean stop saves the sessions
    await broker.start();
    await consumer("nosub-e", seen, "g").ready;
    await waitUntil(() => seen.size >= 500, 10_000, "the 500 queued records");
    expect(new Set(seen.keys())).toEqual(new Set(ids));
  });

  it("closeOnSignals on SIGTERM says the records were not delivered and why, not that all were acknowledged", async () => {
    const root = new URL("../../..", import.meta.url).pathname;
    const child = spawn("node", ["--import", "tsx", join(root, "test/helpers/signal-child.ts")], {
      cwd: root,
      env: {
        ...process.env,
        BILLING_CHILD: JSON.stringify({ port: broker.plainPort, mode: "on", timeoutMs: 1000 }),
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr?.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = once(child, "exit");
    try {
      await waitUntil(() => stdout.includes("ready"), 20_000, "the child to report records");
      child.kill("SIGTERM");
      await exited;
    } finally {
      child.kill("SIGKILL");
    }
    expect(stderr).toMatch(
      /billing client closed: \[TIMEOUT\] closed with \d+ usage records not acknowledged within 1000 ms: no subscriber on billing\/report/,
    );
    expect(stderr).not.toMatch(/every accepted record was acknowledged/);
  });

  /** The reason code of the PUBACK to one QoS 1 publish (one at a time on `raw`). */
  const pubackReason = (raw: MqttClient, topic: string, payload: Buffer) =>
    new Promise<number>((resolve, reject) => {
      const onPacket = (p: Packet) => {
        if (p.cmd !== "puback") return;
        raw.off("packetreceive", onPacket);
        resolve(p.reasonCode ?? 0);
      };
      raw.on("packetreceive", onPacket);
      raw.publish(topic, payload, { qos: 1 }, (err) => {
        if (err) reject(err);
      });
    });

  it("a mosquitto restart forgets the shared subscription; the consumer subscribes again at CONNACK", async () => {
    const seen = new Map<string, number>();
    const c = consumer("nosub-c", seen, "g");
    await c.ready;
    const raw = await connectAsync({
      host: "127.0.0.1",
      port: broker.plainPort,
      protocolVersion: 5,
      reconnectPeriod: 0,
    });
    const probe = usageRecord();
    try {
      // The control: a topic nobody subscribes to is answered 0x10.
      expect(await pubackReason(raw, "nosub-none/report", batchPayload(usageRecord()))).toBe(0x10);
      expect(await pubackReason(raw, "nosub-c/report", batchPayload(usageRecord()))).toBe(0);
    } finally {
      await raw.endAsync();
    }
    await broker.stop("SIGTERM");
    await broker.start();
    await waitUntil(() => c.stats().reconnects >= 1 && c.stats().connected, 10_000, "a reconnect");
    const again = await connectAsync({
      host: "127.0.0.1",
      port: broker.plainPort,
      protocolVersion: 5,
      reconnectPeriod: 0,
    });
    try {
      // The subscription is back once the consumer's SUBACK came (within a moment of CONNACK).
      let reason = -1;
      const end = Date.now() + 5000;
      while (reason !== 0 && Date.now() < end) {
        reason = await pubackReason(again, "nosub-c/report", batchPayload(probe));
        if (reason !== 0) await new Promise((r) => setTimeout(r, 50));
      }
      expect(reason).toBe(0);
    } finally {
      await again.endAsync();
    }
    const client = producer("nosub-c");
    await client.connect(5000);
    const ids = await report(client, 100);
    await client.flush(5000);
    await waitUntil(
      () => seen.has(probe.id) && ids.every((id) => seen.has(id)),
      5000,
      "the records",
    );
    expect(client.stats().heldNoSubscriber).toBe(0);
  });
});
