// Bench rows of issue 13 (many records per message), run by publish-bench.ts in the same
// `npm run bench`: its own mosquitto (plain + TLS, receive maximum 1,000) so that raw mqtt.js can
// keep a window of 1,000 in flight. Each pattern is 100,000 reportUsage calls, against raw
// mqtt.js publishing one pre-encoded record per message (window 1,000); rounds alternate and the
// median is printed. Over TLS, a mosquitto_sub child counts the records delivered.

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { connectAsync } from "mqtt";
import { makePki, type TestPki } from "../helpers/certs.js";
import { Mosquitto } from "../helpers/mosquitto.js";
import { sleep } from "../helpers/time.js";
import { countingSubscriber } from "./counting-subscriber.js";
import { BENCH_METADATA } from "./report-in-turns.js";

const dist = new URL("../../dist/", import.meta.url).href;
const { BillingClient, hashApiKey } = (await import(
  `${dist}src/index.js`
)) as typeof import("../../src/index.js");
type Client = InstanceType<typeof BillingClient>;
type Options = import("../../src/index.js").BillingClientOptions;
const { SqliteSpool } = (await import(
  `${dist}src/spool/index.js`
)) as typeof import("../../src/spool/index.js");
const { usageBatchBytes } = (await import(
  `${dist}src/protocol/usage-batch.js`
)) as typeof import("../../src/protocol/usage-batch.js");
const { UsageRecordSchema } = (await import(
  `${dist}gen/billing/v1/usage_pb.js`
)) as typeof import("../../gen/billing/v1/usage_pb.js");

const N = Number(process.env.BENCH_BATCH_RECORDS ?? 100_000);
const ROUNDS = Number(process.env.BENCH_BATCH_ROUNDS ?? 3);
const RAW_WINDOW = 1000;
const metadata = BENCH_METADATA;
const usage = { apiKey: "bench-key", module: "llm", model: "gpt-4", usage: 150, metadata };

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const f = (n: number) => Math.round(n).toLocaleString("en-US");
const cpuUs = (c0: NodeJS.CpuUsage) => {
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / N;
};

interface Round {
  rate: number;
  cpu: number;
}

/** Raw mqtt.js: one pre-encoded record per message (a UsageBatch of one), window 1,000. */
async function rawRound(port: number): Promise<Round> {
  const payloads = Array.from({ length: N }, (_, i) =>
    usageBatchBytes([
      toBinary(
        UsageRecordSchema,
        create(UsageRecordSchema, {
          id: `01890a5d-ac96-774b-bcce-${String(i).padStart(12, "0")}`,
          apiKeySha256: hashApiKey("bench-key"),
          module: "llm",
          model: "gpt-4",
          usage: 150n,
          occurredAt: timestampNow(),
          metadata,
          producer: "bench-raw",
        }),
      ),
    ]),
  );
  const client = await connectAsync({ host: "127.0.0.1", port, protocolVersion: 5 });
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await new Promise<void>((resolve, reject) => {
    let next = 0;
    let acked = 0;
    let inFlight = 0;
    const send = () => {
      while (inFlight < RAW_WINDOW && next < N) {
        inFlight++;
        client.publish("billing/report", payloads[next++] as Buffer, { qos: 1 }, (err) => {
          if (err) return reject(err);
          inFlight--;
          if (++acked === N) resolve();
          else send();
        });
      }
    };
    send();
  });
  const round = { rate: N / ((performance.now() - t0) / 1000), cpu: cpuUs(c0) };
  await client.endAsync();
  return round;
}

/**
 * `burst`: N calls with no yield, then flush(). `turns`: 100 calls per event-loop turn (each
 * call's synchronous time sampled into `callTimes`), then flush().
 */
async function sdkRound(
  options: Options,
  pattern: "burst" | "turns",
  callTimes?: number[],
): Promise<Round> {
  const client: Client = new BillingClient({
    heartbeatIntervalMs: 0,
    maxQueued: N,
    clientId: `bench-batch-${pattern}`,
    ...options,
  });
  await client.connect();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  if (pattern === "burst") {
    const calls: Array<Promise<string>> = new Array(N);
    for (let i = 0; i < N; i++) calls[i] = client.reportUsage(usage);
    await Promise.all(calls);
  } else {
    for (let i = 0; i < N; i += 100) {
      const calls: Array<Promise<string>> = [];
      for (let j = 0; j < 100; j++) {
        const p0 = performance.now();
        calls.push(client.reportUsage(usage));
        callTimes?.push(performance.now() - p0);
      }
      await Promise.all(calls);
      await new Promise<void>((r) => setImmediate(r));
    }
  }
  await client.flush(120_000);
  const round = { rate: N / ((performance.now() - t0) / 1000), cpu: cpuUs(c0) };
  await client.close();
  return round;
}

/** Bytes of heap and array buffers per record queued (nothing listens: all stay queued). */
async function memoryPerQueuedRecord(): Promise<number> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) return Number.NaN;
  const client: Client = new BillingClient({
    brokerHost: "127.0.0.1",
    brokerPort: 9, // discard: refused at once
    tls: false,
    maxQueued: N,
    heartbeatIntervalMs: 0,
    reconnectBaseMs: 60_000,
    logger: () => {},
  });
  const used = () => process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
  gc();
  gc();
  const before = used();
  const calls: Array<Promise<string>> = [];
  for (let i = 0; i < N; i++) calls.push(client.reportUsage({ ...usage, usage: i }));
  await Promise.all(calls);
  calls.length = 0;
  gc();
  gc();
  const perRecord = (used() - before) / N;
  if (client.stats().queued !== N) throw new Error("records were not all queued");
  await client.close(0).catch(() => {});
  return perRecord;
}

/** Records/s delivered to mosquitto_sub over TLS: from the first call to the last delivery. */
async function tlsDelivered(
  m: Mosquitto,
  pki: TestPki,
  sub: Awaited<ReturnType<typeof countingSubscriber>>,
  maxBatchRecords: number,
): Promise<number> {
  const client: Client = new BillingClient({
    brokerHost: "127.0.0.1",
    brokerPort: m.tlsPort,
    ca: pki.ca,
    heartbeatIntervalMs: 0,
    maxQueued: N,
    maxBatchRecords,
    clientId: `bench-tls-${maxBatchRecords}`,
  });
  await client.connect();
  sub.reset();
  const t0 = performance.now();
  for (let i = 0; i < N; i += 100) {
    const calls: Array<Promise<string>> = [];
    for (let j = 0; j < 100; j++) calls.push(client.reportUsage(usage));
    await Promise.all(calls);
    await new Promise<void>((r) => setImmediate(r));
  }
  await client.flush(300_000);
  while (sub.count() < N) await sleep(2);
  const rate = N / ((performance.now() - t0) / 1000);
  await client.close();
  return rate;
}

/** Prints the rows of issue 13. */
export async function batchBench(): Promise<void> {
  const pki = makePki(["127.0.0.1"]);
  const m = await Mosquitto.start({
    pki,
    plain: true,
    extra: [`max_inflight_messages ${RAW_WINDOW}`],
  });
  // Every topic subscribed (in a process of its own), as in production: without a subscriber an
  // MQTT 5 broker answers PUBACK 0x10 and drops the record, which the SDK holds and sends again.
  const listener = spawn(
    "mosquitto_sub",
    ["-h", "127.0.0.1", "-p", String(m.plainPort), "-V", "mqttv5", "-q", "0", "-t", "#"],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  await sleep(500); // subscribed
  const dir = mkdtempSync(join(tmpdir(), "billing-batch-bench-"));
  const caFile = join(dir, "ca.pem");
  writeFileSync(caFile, pki.ca);
  const plain: Options = { brokerHost: "127.0.0.1", brokerPort: m.plainPort, tls: false };
  let db = 0;
  const spooled = (): Options => ({
    ...plain,
    spool: new SqliteSpool({ path: join(dir, `spool-${db++}.db`) }),
  });
  try {
    const bytes = await memoryPerQueuedRecord();
    const rows = { raw: [] as Round[], burst: [] as Round[], turns: [] as Round[] };
    const spool = { burst: [] as Round[], turns: [] as Round[] };
    const callTimes: number[] = [];
    await rawRound(m.plainPort); // warm-up
    await sdkRound(plain, "burst");
    for (let r = 0; r < ROUNDS; r++) {
      rows.raw.push(await rawRound(m.plainPort));
      rows.burst.push(await sdkRound(plain, "burst"));
      rows.turns.push(await sdkRound(plain, "turns", callTimes));
      spool.burst.push(await sdkRound(spooled(), "burst"));
      spool.turns.push(await sdkRound(spooled(), "turns"));
    }
    const rate = (xs: Round[]) => median(xs.map((x) => x.rate));
    const cpu = (xs: Round[]) => median(xs.map((x) => x.cpu)).toFixed(1);
    const raw = rate(rows.raw);
    const line = (name: string, xs: Round[], target: string) =>
      console.log(
        `${name.padEnd(34)}: ${f(rate(xs))} rec/s  ratio ${(rate(xs) / raw).toFixed(2)} (target ${target})  rounds: ${xs.map((x) => f(x.rate)).join(", ")}`,
      );
    console.log(`\nbatches (issue 13): ${f(N)} records per round, ${ROUNDS} rounds (median)`);
    console.log(
      `${"raw mqtt.js, 1 rec/msg, window 1k".padEnd(34)}: ${f(raw)} msg/s  rounds: ${rows.raw.map((x) => f(x.rate)).join(", ")}`,
    );
    line("sdk burst (no yield until flush)", rows.burst, ">= 3");
    line("sdk 100 per turn", rows.turns, ">= 3");
    line("sdk + SQLite spool, burst", spool.burst, ">= 1.5");
    line("sdk + SQLite spool, 100 per turn", spool.turns, ">= 1.5");
    console.log(
      `${"client CPU per record".padEnd(34)}: raw ${cpu(rows.raw)} µs, sdk burst ${cpu(rows.burst)} µs, sdk 100/turn ${cpu(rows.turns)} µs (target <= 8)`,
    );
    console.log(
      `${"reportUsage call, median".padEnd(34)}: ${(median(callTimes) * 1000).toFixed(1)} µs (target <= 10)`,
    );
    console.log(
      `${"memory per queued record".padEnd(34)}: ${Number.isNaN(bytes) ? "n/a (run with --expose-gc)" : `${Math.round(bytes)} B`} (target <= 600; heap + array buffers)`,
    );
    const sub = await countingSubscriber(m, caFile);
    try {
      await sleep(500); // subscribed
      const batched: number[] = [];
      const single: number[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        batched.push(await tlsDelivered(m, pki, sub, 500));
        single.push(await tlsDelivered(m, pki, sub, 1));
      }
      console.log(
        `${"TLS, delivered to mosquitto_sub".padEnd(34)}: batches ${f(median(batched))} rec/s, one record per message ${f(median(single))} rec/s, ratio ${(median(batched) / median(single)).toFixed(2)}`,
      );
    } finally {
      sub.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    listener.kill();
    await m.close();
  }
}

if (process.argv[1]?.endsWith("batch-bench.ts")) await batchBench();
