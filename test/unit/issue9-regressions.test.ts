// Regression tests for the bugs of issue 9 that need no broker process (embedded Aedes, loopback
// sockets). Each test failed on commit 23c5ce5 for the reason its bug describes.
import { create } from "@bufbuild/protobuf";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { CliIo } from "../../src/cli/cli-io.js";
import { main } from "../../src/cli/main.js";
import {
  BillingClient,
  type BillingClientOptions,
  BillingError,
  getBillingClient,
  UsageRecordSchema,
} from "../../src/index.js";
import { uuidV7 } from "../../src/publisher/uuid-v7.js";
import { AedesBroker, until } from "../helpers/aedes-broker.js";
import { decodeRecords } from "../helpers/fixtures.js";
import { LatencyProxy } from "../helpers/latency-proxy.js";
import { freePort } from "../helpers/mosquitto.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let broker: AedesBroker;
const logs: Array<{ level: string; msg: string }> = [];
// One function for every client, so equal options stay equal for the singleton.
const capture = (level: string, msg: string) => {
  logs.push({ level, msg });
};

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
});

function options(extra: BillingClientOptions = {}): BillingClientOptions {
  return {
    brokerHost: "127.0.0.1",
    brokerPort: broker.port,
    tls: false,
    reconnectBaseMs: 50,
    reconnectMaxMs: 200,
    heartbeatIntervalMs: 0,
    logger: capture,
    ...extra,
  };
}

const base = { apiKey: "key-1", module: "llm", model: "gpt-4", usage: 1 };
const received = () => decodeRecords(broker.payloads("billing/report"));

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
      expect(rate).toBeGreaterThan(1200);
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

// ---- 6. text that changes on the way ---------------------------------------------------------

describe("issue 9.6: text that would change on the way is refused, nothing queued or sent", () => {
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
      // A valid record after it goes through alone: the refused one never reached the broker.
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

// ---- 7. tls: false with a password ---------------------------------------------------------------

describe("issue 9.7: tls: false with a password", () => {
  // The positive case (a non-loopback host warns once) cannot be tested here without traffic to
  // a non-loopback address: it needs a pure function of (host, tls, password) to test apart.
  const plainTextWarning = (l: { level: string; msg: string }) =>
    (l.level === "warn" || l.level === "error") &&
    /password|plain ?text|clear ?text|unencrypted|tls/i.test(l.msg);

  for (const host of ["127.0.0.1", "localhost", "::1"]) {
    it(`no plain-text warning for a loopback broker (${host})`, async () => {
      const client = new BillingClient(
        options({ brokerHost: host, username: "u", password: "p", tls: false }),
      );
      await client.connect(5000).catch(() => {}); // ::1 may have no listener: the log is the point
      await client.close(1000).catch(() => {});
      expect(logs.filter(plainTextWarning)).toEqual([]);
      // Positive control: the same logger does receive the TLS warning the SDK already has.
      const insecure = new BillingClient(
        options({ tls: true, dangerouslyDisableTlsVerification: true, password: "p" }),
      );
      await insecure.close(0).catch(() => {});
      expect(logs.filter(plainTextWarning).length).toBeGreaterThan(0);
    });
  }
});

// ---- 8. tail says "connection lost" only when it is ------------------------------------------

describe("issue 9.8: billing-sdk tail", () => {
  function io() {
    const out: string[] = [];
    const err: string[] = [];
    let interrupt: (() => void) | undefined;
    const cli: CliIo = {
      out: (l) => out.push(l),
      err: (l) => err.push(l),
      onInterrupt: (stop) => {
        interrupt = stop;
      },
    };
    return { cli, out, err, interrupt: () => interrupt?.() };
  }
  const conn = () => ["--broker", `mqtt://127.0.0.1:${broker.port}`];
  const ready = (a: ReturnType<typeof io>) =>
    until(() => a.err.some((l) => l.startsWith("tail: listening")), 5000, "tail ready");

  it('does not print "connection lost" after --count is reached, nor after Ctrl-C', async () => {
    const a = io();
    const counted = main(["tail", "--count", "2", ...conn()], a.cli);
    await ready(a);
    const client = new BillingClient(options());
    await client.reportUsage({ ...base, usage: 1 });
    await client.reportUsage({ ...base, usage: 2 });
    await client.flush(5000);
    expect(await counted).toBe(0);
    await sleep(200); // let late events arrive
    expect(a.out).toHaveLength(2);
    expect.soft(a.err, "stderr after --count 2 was reached").not.toContain("tail: connection lost");

    const b = io();
    const interrupted = main(["tail", ...conn()], b.cli);
    await ready(b);
    b.interrupt();
    expect(await interrupted).toBe(0);
    await sleep(200);
    expect.soft(b.err, "stderr after Ctrl-C").not.toContain("tail: connection lost");

    // Positive control: a connection that is really lost is reported, with exit code 1.
    const c = io();
    const lost = main(["tail", ...conn()], c.cli);
    await ready(c);
    await broker.stop();
    try {
      expect(await lost).toBe(1);
      expect(c.err).toContain("tail: connection lost");
    } finally {
      await broker.start();
    }
  });
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
      const client = new BillingClient(options());
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
