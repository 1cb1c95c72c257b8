import { connectAsync, type MqttClient } from "mqtt";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  BillingClient,
  type BillingClientOptions,
  getBillingClient,
} from "../../../../src/index.js";
import { AedesBroker } from "../../../helpers/aedes-broker.js";
import { decodeRecords, plainClientOptions } from "../../../helpers/fixtures.js";
import { sleep, waitUntil } from "../../../helpers/time.js";

// Batching through a real broker (Aedes) and a raw mqtt.js subscriber that counts messages.

let broker: AedesBroker;
let sub: MqttClient;
/** While set, the broker never answers a report (its PUBACKs never come). */
let deaf = false;
const messages: Buffer[] = [];

beforeAll(async () => {
  broker = await AedesBroker.create({ ignorePublish: (t) => deaf && t === "billing/report" });
  sub = await connectAsync({ host: "127.0.0.1", port: broker.port, protocolVersion: 4 });
  sub.on("message", (_topic, payload) => messages.push(payload));
  await sub.subscribeAsync("billing/report", { qos: 1 });
});
afterAll(async () => {
  await sub.endAsync();
  await broker.close();
});
afterEach(async () => {
  await getBillingClient()
    ?.close(100)
    .catch(() => {});
  messages.length = 0;
  broker.published.length = 0;
  await broker.start();
});

function options(extra: BillingClientOptions = {}): BillingClientOptions {
  return plainClientOptions(broker.port, extra);
}

const report = (client: BillingClient, usage: number) =>
  client.reportUsage({ apiKey: "key-1", module: "llm", model: "gpt-4", usage });

/** Waits until the subscriber has `n` records, then returns their ids. */
async function receivedIds(n: number): Promise<string[]> {
  await waitUntil(
    () => decodeRecords(messages).length >= n,
    10_000,
    `${n} records at the subscriber`,
  );
  return decodeRecords(messages).map((r) => r.id);
}

describe("batching on a real broker", () => {
  it("records reported in one turn arrive in few messages, every id once, in order", async () => {
    const client = new BillingClient(options());
    await client.connect();
    const ids = await Promise.all(Array.from({ length: 1200 }, (_, i) => report(client, i)));
    await client.flush(10_000);
    expect(await receivedIds(1200)).toEqual(ids);
    expect(messages.length).toBeLessThanOrEqual(6); // 1,200 records: 3 full batches of 500 at best
    expect(client.stats()).toMatchObject({ published: 1200, queued: 0, failed: 0 });
    expect(client.stats().publishedMessages).toBe(messages.length);
  });

  it("maxBatchRecords and maxBatchBytes bound every message", async () => {
    const client = new BillingClient(options({ maxBatchRecords: 7 }));
    await client.connect();
    const ids = await Promise.all(Array.from({ length: 100 }, (_, i) => report(client, i)));
    await client.flush(10_000);
    expect(await receivedIds(100)).toEqual(ids);
    expect(messages.length).toBeGreaterThanOrEqual(15);
    for (const m of messages) expect(decodeRecords([m]).length).toBeLessThanOrEqual(7);
    await client.close();
    messages.length = 0;

    const small = new BillingClient(options({ maxRecordBytes: 1000, maxBatchBytes: 1500 }));
    await small.connect();
    const more = await Promise.all(Array.from({ length: 300 }, (_, i) => report(small, i)));
    await small.flush(10_000);
    expect(await receivedIds(300)).toEqual(more);
    for (const m of messages) expect(m.length).toBeLessThanOrEqual(1500);
    expect(messages.length).toBeGreaterThan(300 / 20); // ~130-byte records: ≤ 11 per message
  });

  it("lingerMs gathers records reported across turns; without it each goes at once", async () => {
    const spaced = async (client: BillingClient) => {
      const ids: string[] = [];
      for (let i = 0; i < 20; i++) {
        ids.push(await report(client, i));
        await new Promise((r) => setImmediate(r));
      }
      return ids;
    };
    const eager = new BillingClient(options());
    await eager.connect();
    const first = await spaced(eager);
    await eager.flush(5000);
    expect(await receivedIds(20)).toEqual(first);
    const eagerMessages = messages.length;
    await eager.close();
    messages.length = 0;

    const lingering = new BillingClient(options({ lingerMs: 1000 }));
    await lingering.connect();
    const second = await spaced(lingering);
    await sleep(100);
    expect(messages).toHaveLength(0); // still lingering
    const t0 = Date.now();
    await lingering.flush(5000); // flush sends at once, without waiting out lingerMs
    expect(Date.now() - t0).toBeLessThan(900);
    expect(await receivedIds(20)).toEqual(second);
    expect(messages.length).toBe(1);
    expect(eagerMessages).toBeGreaterThan(10);
  });

  it("a connection lost with batches in flight: every record arrives, with its own id", async () => {
    const client = new BillingClient(options({ maxBatchRecords: 50, inFlightWindow: 4 }));
    await client.connect();
    // (Aedes sends a PUBACK before it routes the message: a stop right after can lose a message
    // it acknowledged. A deaf broker makes "in flight, never acknowledged" certain.)
    deaf = true;
    const ids = Array.from({ length: 2000 }, (_, i) => report(client, i));
    await waitUntil(() => client.stats().inFlight === 200, 5000, "four batches of 50 in flight");
    await broker.stop(); // the PUBACKs of the batches in flight never come
    deaf = false;
    await broker.start();
    const all = await Promise.all(ids);
    await client.flush(15_000);
    // The stop also dropped the subscriber: what the broker accepted is read from the broker.
    const got = new Set(decodeRecords(broker.payloads("billing/report")).map((r) => r.id));
    expect(all.filter((id) => !got.has(id))).toEqual([]);
    expect(client.stats()).toMatchObject({ published: 2000, queued: 0 });
    expect(client.stats().failed).toBe(200); // the four batches cut off in flight, per record
  });

  it("bad batching options are refused with INVALID_ARGUMENT, naming the option", () => {
    const bad: BillingClientOptions[] = [
      { maxBatchRecords: 0 },
      { maxBatchRecords: 1.5 },
      { maxBatchBytes: 1000 }, // below maxRecordBytes (32,768) + 6
      { maxRecordBytes: 100, maxBatchBytes: 105 },
      { lingerMs: -1 },
      { lingerMs: 60_001 },
    ];
    for (const b of bad) {
      const name = Object.keys(b).find((k) => k !== "maxRecordBytes") as string;
      expect(() => new BillingClient(options(b)), JSON.stringify(b)).toThrow(
        expect.objectContaining({
          code: "INVALID_ARGUMENT",
          message: expect.stringContaining(name),
        }),
      );
    }
    expect(getBillingClient()).toBeUndefined();
  });
});
