import { describe, expect, it } from "vitest";
import { BillingClient, type BillingClientOptions, BillingError } from "../../src/index.js";
import { uuidV7 } from "../../src/protocol/uuid-v7.js";
import { AedesBroker } from "../helpers/aedes-broker.js";
import { useEmbeddedBroker } from "../helpers/embedded-broker.js";
import { decodeRecords } from "../helpers/fixtures.js";
import { LatencyProxy } from "../helpers/latency-proxy.js";
import { freePort } from "../helpers/mosquitto.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const suite = useEmbeddedBroker();
const { options } = suite;
const base = { apiKey: "key-1", module: "llm", model: "gpt-4", usage: 1 };

// ---- 1. flush() under steady load ------------------------------------------------------------

describe("issue 9.1: flush() under steady load", () => {
  it("flush(3000) resolves under 2,000 records/s over a 20 ms link, with everything reported before it acknowledged", async () => {
    const own = await AedesBroker.create();
    const proxy = await LatencyProxy.start(own.port, 20);
    const acked = new Set<string>();
    own.broker.on("publish", (packet, client) => {
      if (client && packet.topic === "billing/report") {
        for (const r of decodeRecords([packet.payload as Buffer])) acked.add(r.id);
      }
    });
    const client = new BillingClient(options({ brokerPort: proxy.port }));
    const accepted: string[] = [];
    let loadError: unknown;
    let load: NodeJS.Timeout | undefined;
    try {
      await client.connect(5000);
      // ~2,000 records/s: 10 records every 5 ms.
      const startedAt = performance.now();
      load = setInterval(() => {
        for (let i = 0; i < 10; i++) {
          client.reportUsage({ ...base, usage: i }).then(
            (id) => accepted.push(id),
            (e: unknown) => {
              loadError ??= e;
            },
          );
        }
      }, 5);
      await sleep(700);
      for (let round = 1; round <= 3; round++) {
        const before = accepted.slice();
        const publishedBefore = client.stats().published;
        const t0 = performance.now();
        const outcome = await client.flush(3000).then(
          () => "resolved",
          (e: Error) => `rejected: ${e.message}`,
        );
        const ms = Math.round(performance.now() - t0);
        const ackedDuring = client.stats().published - publishedBefore;
        // Checked at once, when flush settles: every record accepted before the call is in.
        const missing = before.filter((id) => !acked.has(id));
        expect(
          outcome,
          `flush #${round} (${ms} ms; ${ackedDuring} records acknowledged meanwhile)`,
        ).toBe("resolved");
        expect(missing, `flush #${round}: records reported before it, not acknowledged`).toEqual(
          [],
        );
        await sleep(700);
      }
      // The load was real and steady throughout (not a trivial pass on an idle client).
      const rate = accepted.length / ((performance.now() - startedAt) / 1000);
      // (2,000/s is asked; a loaded CI box may deliver less: still steady load for a flush.)
      expect(rate).toBeGreaterThan(500);
      expect(loadError).toBeUndefined();
    } finally {
      clearInterval(load);
      await client.close(10_000).catch(() => {});
      await proxy.stop();
      await own.close();
    }
  }, 30_000);
});

// ---- 4. the queue is bounded in bytes --------------------------------------------------------

describe("issue 9.4: maxQueuedBytes", () => {
  // ~30 KB encoded, under the default maxRecordBytes (32,768).
  const blob = "x".repeat(30_000);
  const fill = async (client: BillingClient, upTo: number) => {
    for (let i = 0; i < upTo; i++) {
      const err = await client.reportUsage({ ...base, usage: i, metadata: { blob } }).then(
        () => undefined,
        (e: unknown) => e,
      );
      if (err !== undefined) return { accepted: i, err };
    }
    return { accepted: upTo, err: undefined };
  };

  it("maxQueuedBytes: 1_000_000 refuses the ~34th record of 30 KB with QUEUE_FULL, counted in rejected", async () => {
    // A closed port: the broker is unreachable, everything stays queued.
    const client = new BillingClient(
      options({ brokerPort: await freePort(), maxQueuedBytes: 1_000_000 } as BillingClientOptions),
    );
    const { accepted, err } = await fill(client, 100);
    expect(err, `no refusal after ${accepted} records of 30 KB`).toBeInstanceOf(BillingError);
    expect(err).toMatchObject({ code: "QUEUE_FULL" });
    expect(accepted).toBeGreaterThanOrEqual(33);
    expect(accepted).toBeLessThanOrEqual(34);
    expect(client.stats()).toMatchObject({ queued: accepted, rejected: 1 });
  });

  it("by default (64 MiB) no more than ~2,200 records of 30 KB are queued", async () => {
    const client = new BillingClient(options({ brokerPort: await freePort() }));
    const { accepted, err } = await fill(client, 2600);
    expect(err, `no refusal after ${accepted} records of 30 KB`).toBeInstanceOf(BillingError);
    expect(err).toMatchObject({ code: "QUEUE_FULL" });
    // 67,108,864 / ~30,100 bytes ≈ 2,229.
    expect(accepted).toBeGreaterThanOrEqual(2150);
    expect(accepted).toBeLessThanOrEqual(2240);
    expect(client.stats()).toMatchObject({ queued: accepted, rejected: 1 });
  }, 30_000);
});

// ---- 5. the size budget is counted while validating ------------------------------------------

describe("issue 9.5: maxRecordBytes is enforced before encoding", () => {
  for (const [name, size] of [
    ["one 100 KB string referenced 9,000 times", 100_000],
    // Each string alone fits maxRecordBytes (32,768): only counting the total refuses it early.
    ["one 30 KB string referenced 9,000 times", 30_000],
  ] as const) {
    it(`${name} is refused INVALID_ARGUMENT in < 500 ms`, async () => {
      const client = new BillingClient(options({ brokerPort: await freePort() }));
      const s = "x".repeat(size);
      const metadata = { refs: new Array<string>(9000).fill(s) };
      const t0 = performance.now();
      const err = await client.reportUsage({ ...base, metadata }).catch((e: unknown) => e);
      const ms = performance.now() - t0;
      expect(err).toBeInstanceOf(BillingError);
      expect(err).toMatchObject({ code: "INVALID_ARGUMENT" });
      expect(ms, "reportUsage took this long to refuse (ms)").toBeLessThan(500);
      expect(client.stats()).toMatchObject({ queued: 0, rejected: 1 });
    }, 60_000);
  }
});

// ---- found while testing 9.2 (not in issue 9): close() with a backlog --------------------------

describe("close() with records still queued on a live connection", () => {
  it("close(0) with 5,000 records queued throws nothing uncaught, and rejects TIMEOUT", async () => {
    // mqtt.js calls a publish callback synchronously once end() has begun; pump → publish →
    // callback → onPublished → pump … then recurses once per queued record.
    const uncaught: Error[] = [];
    const onUncaught = (err: Error) => uncaught.push(err);
    process.on("uncaughtException", onUncaught);
    try {
      // One record per message: 5,000 publishes, as when this was written (batches of 500 would
      // all be acknowledged during the goodbye, and close would not time out).
      const client = new BillingClient(options({ maxBatchRecords: 1 }));
      await client.connect(5000);
      for (let i = 0; i < 5000; i++) void client.reportUsage({ ...base, usage: i });
      const closed = await client.close(0).then(
        () => undefined,
        (e: unknown) => e,
      );
      await sleep(200);
      expect(
        uncaught.map((e) => `${e.name}: ${e.message}`).slice(0, 3),
        `uncaught exceptions during close (${uncaught.length})`,
      ).toEqual([]);
      expect(closed).toMatchObject({ code: "TIMEOUT" });
    } finally {
      process.off("uncaughtException", onUncaught);
    }
  });
});

// ---- 3. UUIDv7 randomness (last: it moves the generator's clock ahead by ~20 s) --------------

describe("issue 9.3: every UUIDv7 carries its own 62 fresh random bits", () => {
  const N = 20_000;
  const bytesOf = (id: string) => Buffer.from(id.replaceAll("-", ""), "hex");

  it("consecutive ids (one per millisecond) share no bits; rand_b is uniform; no excess of ids ending in 0000", () => {
    // Each id in a new millisecond: its 12-bit counter (rand_a) is seeded afresh.
    const start = Date.now() + 1;
    const ids = Array.from({ length: N }, (_, i) => uuidV7(start + i));
    const b = ids.map(bytesOf);
    const at = (n: number, i: number) => (b[n] as Buffer)[i] as number;
    for (let n = 0; n < N; n++) {
      expect(at(n, 6) >> 4).toBe(7);
      expect(at(n, 8) >> 6).toBe(2);
    }
    // (a) The low 11 bits of id n's last two bytes vs id n+1's counter: equal by chance 1/2048.
    let same = 0;
    for (let n = 0; n + 1 < N; n++) {
      const tail = ((at(n, 14) << 8) | at(n, 15)) & 0x7ff;
      const counter = ((at(n + 1, 6) & 0x0f) << 8) | at(n + 1, 7);
      if (tail === counter) same++;
    }
    // Expected ~10 in 20,000; 40 is far beyond chance.
    expect
      .soft(same, `ids whose last bits are the next id's counter, of ${N - 1}`)
      .toBeLessThan(40);
    // (b) No excess of ids ending in 0000: by chance 1 in 65,536 (~0.3 here).
    const zeros = ids.filter((id) => id.endsWith("0000")).length;
    expect.soft(zeros, `ids ending in 0000, of ${N}`).toBeLessThanOrEqual(5);
    // (c) Each of the 62 rand_b bits is set in ~half the ids (±6 standard deviations).
    const sd = Math.sqrt(N / 4);
    const skewed: string[] = [];
    for (let bit = 2; bit < 64; bit++) {
      const byte = 8 + (bit >> 3);
      const mask = 0x80 >> (bit & 7);
      let ones = 0;
      for (let n = 0; n < N; n++) if ((at(n, byte) & mask) !== 0) ones++;
      if (Math.abs(ones - N / 2) > 6 * sd) skewed.push(`rand_b bit ${bit - 2}: ${ones}/${N}`);
    }
    expect.soft(skewed).toEqual([]);
  });
});
