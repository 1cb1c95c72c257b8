import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { toJson } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { connectAsync, type MqttClient } from "mqtt";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { UsageRecordSchema } from "../../../gen/billing/v1/usage_pb.js";
import { BillingClient, type BillingClientOptions, getBillingClient } from "../../../src/index.js";
import { decodeUsageBatch } from "../../../src/protocol/usage-batch.js";
import { quiet } from "../../helpers/fixtures.js";
import { Mosquitto } from "../../helpers/mosquitto.js";
import { mosquittoAvailable } from "../../helpers/require-broker.js";
import { sleep, waitUntil } from "../../helpers/time.js";

// Batches through a real mosquitto (MQTT 5): within the maximum packet size it announces, past a
// limit it does not announce, and decoded by a Python backend with protoc-generated classes.

const PY = "/usr/bin/python3";
const SCRIPT = new URL("../../interop/decode_usage_batch.py", import.meta.url).pathname;
const PROTO = new URL("../../../proto", import.meta.url).pathname;

async function withBroker(extra: string[]) {
  const broker = await Mosquitto.start({ extra: ["max_inflight_messages 100", ...extra] });
  const payloads: Buffer[] = [];
  const sub: MqttClient = await connectAsync({
    host: "127.0.0.1",
    port: broker.plainPort,
    protocolVersion: 5,
  });
  sub.on("message", (_t, payload) => payloads.push(payload));
  await sub.subscribeAsync("billing/report", { qos: 1 });
  const options = (extra: BillingClientOptions = {}): BillingClientOptions => ({
    brokerHost: "127.0.0.1",
    brokerPort: broker.plainPort,
    tls: false,
    heartbeatIntervalMs: 0,
    reconnectBaseMs: 50,
    reconnectMaxMs: 500,
    logger: quiet,
    ...extra,
  });
  const close = async () => {
    await sub.endAsync();
    await broker.close();
  };
  return { payloads, options, close };
}

const metadata = { prompt: "x".repeat(200) };
const report = (client: BillingClient, usage: number, extra = {}) =>
  client.reportUsage({ apiKey: "k", module: "llm", model: "m", usage, metadata, ...extra });

describe.runIf(mosquittoAvailable())("batches on a real mosquitto", () => {
  afterEach(async () => {
    await getBillingClient()
      ?.close(500)
      .catch(() => {});
  });

  it("stays within the maximum packet size mosquitto announces; every record arrives exactly once", async () => {
    const b = await withBroker(["max_packet_size 20000"]);
    try {
      const client = new BillingClient(b.options());
      await client.connect();
      const ids = await Promise.all(Array.from({ length: 3000 }, (_, i) => report(client, i)));
      await client.flush(30_000);
      await waitUntil(
        () => b.payloads.length > 0 && count(b.payloads) >= 3000,
        20_000,
        "3000 records",
      );
      for (const p of b.payloads) expect(p.length).toBeLessThanOrEqual(20000);
      const perMessage = b.payloads.map((p) => decodeUsageBatch(p).length);
      expect(Math.max(...perMessage)).toBeGreaterThan(20); // ~280-byte records: ~70 per message
      expect(b.payloads.length).toBeLessThan(3000 / 20);
      expect(b.payloads.flatMap((p) => decodeUsageBatch(p).map((r) => r.id))).toEqual(ids);
      expect(client.stats()).toMatchObject({ published: 3000, failed: 0, reconnects: 0 });
    } finally {
      await b.close();
    }
  });

  it("a maximum packet size too small for any record: connect() fails with PROTOCOL naming it", async () => {
    const b = await withBroker(["max_packet_size 140"]);
    try {
      const client = new BillingClient(b.options());
      const err = await client.connect(5000).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toMatchObject({ code: "PROTOCOL" });
      expect(String(err)).toMatch(/maximum packet size \(140 bytes\).*topic "billing\/report"/);
      expect(client.isConnected()).toBe(false);
    } finally {
      await b.close();
    }
  });

  it("a record queued before the first CONNACK, over the announced maximum packet size: undeliverable, no drop", async () => {
    const b = await withBroker(["max_packet_size 4000"]);
    const logs: string[] = [];
    try {
      const client = new BillingClient(b.options({ logger: (_l, m) => logs.push(m) }));
      // Before the CONNACK, only maxRecordBytes (64 KiB) bounds a record.
      const big = report(client, 1, { metadata: { prompt: "x".repeat(6000) } });
      const small = await Promise.all(Array.from({ length: 20 }, (_, i) => report(client, i)));
      await big;
      await client.connect();
      await waitUntil(() => count(b.payloads) >= 20, 10_000, "the 20 small records");
      expect(recordIds(b.payloads)).toEqual(small);
      await sleep(300);
      expect(client.stats()).toMatchObject({ published: 20, undeliverable: 1, reconnects: 0 });
      expect(logs.join("\n")).toMatch(/larger than the largest batch .*maximum packet size/);
    } finally {
      await b.close();
    }
  });

  // mosquitto's message_size_limit is not announced: it answers a larger message with PUBACK
  // 0x95, which mqtt.js cannot parse, and the connection drops. The batch's records are then
  // sent alone as suspects: slow, but every record arrives; set maxBatchBytes below such a limit.
  it("past a limit the broker does not announce, every record still arrives", async () => {
    const b = await withBroker(["message_size_limit 6000"]);
    try {
      const client = new BillingClient(b.options());
      await client.connect();
      const ids = await Promise.all(Array.from({ length: 60 }, (_, i) => report(client, i)));
      await client.flush(60_000);
      await waitUntil(() => new Set(recordIds(b.payloads)).size === 60, 10_000, "60 records");
      expect(new Set(recordIds(b.payloads))).toEqual(new Set(ids));
      expect(client.stats()).toMatchObject({ published: 60, queued: 0 });
      expect(client.stats().reconnects).toBeGreaterThan(0);
      // With maxBatchBytes under the limit: no drop at all.
      await client.close();
      b.payloads.length = 0;
      const fitted = new BillingClient(b.options({ maxRecordBytes: 4000, maxBatchBytes: 5500 }));
      await fitted.connect();
      const more = await Promise.all(Array.from({ length: 300 }, (_, i) => report(fitted, i)));
      await fitted.flush(30_000);
      await waitUntil(() => count(b.payloads) >= 300, 10_000, "300 records");
      expect(recordIds(b.payloads)).toEqual(more);
      expect(fitted.stats()).toMatchObject({ published: 300, failed: 0, reconnects: 0 });
    } finally {
      await b.close();
    }
  }, 90_000);

  // A drop with batches in flight halves the batch bytes (DropCap), so batches narrow down to
  // what the limit takes in a few drops; before, every record in flight became a suspect, sent
  // alone: one message per round trip (1,000 messages, 3 reconnects, 3,000 failed).
  it("past a limit the broker does not announce: few reconnects and messages per 1,000 records", async () => {
    const b = await withBroker(["message_size_limit 6000"]);
    try {
      const client = new BillingClient(b.options({ inFlightWindow: 4 }));
      await client.connect();
      const ids = await Promise.all(Array.from({ length: 1000 }, (_, i) => report(client, i)));
      await client.flush(60_000);
      await waitUntil(() => new Set(recordIds(b.payloads)).size === 1000, 10_000, "1000 records");
      expect(new Set(recordIds(b.payloads))).toEqual(new Set(ids));
      const s = client.stats();
      console.log(
        `1,000 records: ${s.publishedMessages} messages, ${s.reconnects} reconnects, ${s.failed} failed`,
      );
      expect(s).toMatchObject({ published: 1000, queued: 0, undeliverable: 0 });
      expect(s.publishedMessages).toBeLessThan(250); // ~280-byte records: ≤ 21 fit in 6,000 bytes
      expect(s.reconnects).toBeLessThan(10); // ~log2(140 KB / 6 KB) drops
    } finally {
      await b.close();
    }
  }, 90_000);

  const python = spawnSync(PY, ["-c", "import google.protobuf"]).status === 0;
  const protoc = spawnSync("/usr/bin/protoc", ["--version"]).status === 0;
  describe.runIf(python && protoc)("a Python backend", () => {
    let dir: string;
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), "billing-batch-interop-"));
      execFileSync("/usr/bin/protoc", [
        `--python_out=${dir}`,
        "-I",
        PROTO,
        "billing/v1/usage.proto",
      ]);
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it("decodes the batches billing-sdk publishes (protoc classes, python3-protobuf)", async () => {
      const b = await withBroker([]);
      try {
        const client = new BillingClient(b.options({ maxBatchRecords: 40, clientId: "svc-py" }));
        await client.connect();
        const rich = {
          text: "héllo ✓ 𝄞",
          n: 1.5,
          big: 12345678901,
          nested: { list: [1, "a", null, true, { deep: [] }] },
          empty: {},
        };
        const ids = await Promise.all(
          Array.from({ length: 100 }, (_, i) =>
            report(client, i * 1000, { metadata: i % 2 === 0 ? rich : { i } }),
          ),
        );
        await client.flush(10_000);
        await waitUntil(() => count(b.payloads) >= 100, 10_000, "100 records");
        expect(b.payloads.length).toBeGreaterThanOrEqual(3); // 40 per message at most
        const files = b.payloads.map((p, i) => {
          const file = join(dir, `batch-${i}.bin`);
          writeFileSync(file, p);
          return file;
        });
        const lines = execFileSync(PY, [SCRIPT, dir, ...files], { maxBuffer: 1 << 24 })
          .toString()
          .trim()
          .split("\n")
          .map((l) => JSON.parse(l));
        const ours = b.payloads.flatMap((p) => decodeUsageBatch(p));
        expect(lines.map((l) => l.id)).toEqual(ids);
        for (const [i, l] of lines.entries()) {
          const r = ours[i];
          if (r === undefined) throw new Error("missing record");
          expect(l).toMatchObject({
            usage: String(i * 1000),
            module: "llm",
            model: "m",
            producer: "svc-py",
            api_key_sha256: r.apiKeySha256,
          });
          expect(Date.parse(l.occurred_at)).toBe(timestampDate(r.occurredAt as never).getTime());
          expect(l.metadata).toEqual(i % 2 === 0 ? rich : { i });
          expect(toJson(UsageRecordSchema, r)).toMatchObject({ metadata: l.metadata });
        }
      } finally {
        await b.close();
      }
    });
  });
});

const recordIds = (payloads: Buffer[]) =>
  payloads.flatMap((p) => decodeUsageBatch(p).map((r) => r.id));
const count = (payloads: Buffer[]) => recordIds(payloads).length;
