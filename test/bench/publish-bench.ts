// npm run bench: billing-sdk's reportUsage against raw mqtt.js, in the same run, on one local
// mosquitto (started here on a free port, stopped at the end). Prints rates and their ratio, the
// median reportUsage call time, and memory per queued record. Ratios are what to compare: the
// absolute numbers move with the machine.
//
// Method: N records; both sides publish QoS 1 with the same in-flight window on MQTT 5. Raw
// mqtt.js sends pre-encoded UsageRecord payloads; billing-sdk gets reportUsage() calls, 100 per
// event-loop turn (as a busy service would make them), and the clock stops when flush() says
// every record was acknowledged. Rounds alternate raw/sdk; the median round of each is printed.
// The SDK is measured as users run it: compiled (`npm run build` runs first), from dist/.

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { connectAsync } from "mqtt";
import { findMosquitto, freePort, Mosquitto } from "../helpers/mosquitto.js";
import { sleep } from "../helpers/time.js";
import { batchBench } from "./batch-bench.js";
import { BENCH_METADATA, reportInTurns } from "./report-in-turns.js";

// The compiled package (types from the sources it was built from).
const dist = new URL("../../dist/", import.meta.url).href;
const { BillingClient, hashApiKey } = (await import(
  `${dist}src/index.js`
)) as typeof import("../../src/index.js");
const { SqliteSpool } = (await import(
  `${dist}src/spool/index.js`
)) as typeof import("../../src/spool/index.js");
const { usageBatchBytes } = (await import(
  `${dist}src/protocol/usage-batch.js`
)) as typeof import("../../src/protocol/usage-batch.js");
const { UsageRecordSchema } = (await import(
  `${dist}gen/billing/v1/usage_pb.js`
)) as typeof import("../../gen/billing/v1/usage_pb.js");

const N = Number(process.env.BENCH_RECORDS ?? 50_000);
const WINDOW = Number(process.env.BENCH_WINDOW ?? 256);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const OTEL_ROUNDS = Number(process.env.BENCH_OTEL_ROUNDS ?? 11);
const BATCH = 100;
const metadata = BENCH_METADATA;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

/** CPU time of this process per record, µs, over the timed part of each round. */
const cpu = { raw: [] as number[], sdk: [] as number[] };
const cpuSince = (c0: NodeJS.CpuUsage) => {
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / N;
};

async function rawRound(port: number): Promise<number> {
  // One pre-encoded record per message, framed as the UsageBatch of one the wire carries.
  const payloads = Array.from({ length: N }, (_, i) =>
    Buffer.from(
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
    ),
  );
  const client = await connectAsync({ host: "127.0.0.1", port, protocolVersion: 5 });
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await new Promise<void>((resolve, reject) => {
    let next = 0;
    let acked = 0;
    let inFlight = 0;
    const send = () => {
      while (inFlight < WINDOW && next < N) {
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
  const rate = N / ((performance.now() - t0) / 1000);
  cpu.raw.push(cpuSince(c0));
  await client.endAsync();
  return rate;
}

async function sdkRound(port: number, callTimes: number[], spoolPath?: string): Promise<number> {
  const client = new BillingClient({
    brokerHost: "127.0.0.1",
    brokerPort: port,
    tls: false,
    inFlightWindow: WINDOW,
    maxQueued: N,
    heartbeatIntervalMs: 0,
    clientId: "bench-sdk",
    ...(spoolPath === undefined ? {} : { spool: new SqliteSpool({ path: spoolPath }) }),
  });
  await client.connect();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  // The probe times each call's synchronous work (all of it without a spool).
  await reportInTurns(client, N, BATCH, callTimes);
  await client.flush(60_000);
  const rate = N / ((performance.now() - t0) / 1000);
  if (spoolPath === undefined) cpu.sdk.push(cpuSince(c0));
  await client.close();
  return rate;
}

async function memoryPerRecord(): Promise<number> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) return Number.NaN;
  // Nothing listens on this port: every record stays queued.
  const client = new BillingClient({
    brokerHost: "127.0.0.1",
    brokerPort: await freePort(),
    tls: false,
    maxQueued: N,
    heartbeatIntervalMs: 0,
    reconnectBaseMs: 60_000,
    logger: () => {},
  });
  const used = () => {
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers;
  };
  gc();
  gc();
  const before = used();
  for (let i = 0; i < N; i++) {
    await client.reportUsage({
      apiKey: "bench-key",
      module: "llm",
      model: "gpt-4",
      usage: i,
      metadata,
    });
  }
  gc();
  gc();
  const perRecord = (used() - before) / N;
  if (client.stats().queued !== N) throw new Error("records were not all queued");
  await client.close(0).catch(() => {}); // they are meant to be dropped here
  return perRecord;
}

// Issue 15: the cost of OpenTelemetry metrics on reportUsage. The same rounds as sdkRound, with
// and without instrumentClient() on a real SDK MeterProvider whose reader collects every 100 ms
// (far more often than the usual 10-60 s, so the collection cost shows), alternating.
async function otelRound(port: number, withMetrics: boolean, callTimes: number[]) {
  const { instrumentClient } = (await import(
    `${dist}src/otel/index.js`
  )) as typeof import("../../src/otel/index.js");
  const sdk = await import("@opentelemetry/sdk-metrics");
  const exporter = new sdk.InMemoryMetricExporter(sdk.AggregationTemporality.CUMULATIVE);
  const reader = new sdk.PeriodicExportingMetricReader({
    exporter,
    exportIntervalMillis: Number(process.env.BENCH_OTEL_INTERVAL ?? 100),
  });
  const meterProvider = new sdk.MeterProvider({ readers: [reader] });
  const client = new BillingClient({
    brokerHost: "127.0.0.1",
    brokerPort: port,
    tls: false,
    inFlightWindow: WINDOW,
    maxQueued: N,
    heartbeatIntervalMs: 0,
    clientId: "bench-otel",
    logger: () => {},
  });
  const handle = withMetrics ? instrumentClient(client, { meterProvider }) : undefined;
  await client.connect();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await reportInTurns(client, N, BATCH, callTimes);
  await client.flush(60_000);
  const rate = N / ((performance.now() - t0) / 1000);
  const cpuPerRecord = cpuSince(c0);
  const exported = exporter.getMetrics().length;
  handle?.stop();
  await client.close();
  await meterProvider.shutdown();
  if (withMetrics && exported === 0 && process.env.BENCH_OTEL_INTERVAL === undefined) {
    throw new Error("the reader collected nothing");
  }
  return { rate, cpuPerRecord };
}

/** What one collection of instrumentClient's instruments costs (µs), the only work metrics add. */
async function otelCollectCost(port: number): Promise<number> {
  const { instrumentClient } = (await import(
    `${dist}src/otel/index.js`
  )) as typeof import("../../src/otel/index.js");
  const sdk = await import("@opentelemetry/sdk-metrics");
  const exporter = new sdk.InMemoryMetricExporter(sdk.AggregationTemporality.CUMULATIVE);
  const reader = new sdk.PeriodicExportingMetricReader({
    exporter,
    exportIntervalMillis: 3_600_000,
  });
  const meterProvider = new sdk.MeterProvider({ readers: [reader] });
  const client = new BillingClient({
    brokerHost: "127.0.0.1",
    brokerPort: port,
    tls: false,
    heartbeatIntervalMs: 0,
    logger: () => {},
  });
  const handle = instrumentClient(client, { meterProvider });
  await client.connect();
  const times: number[] = [];
  for (let i = 0; i < 2_000; i++) {
    const t0 = performance.now();
    const { resourceMetrics } = await reader.collect();
    times.push(performance.now() - t0);
    // 15 of the 17: no key list yet (no age), no refusal yet (no reason).
    const n = resourceMetrics.scopeMetrics[0]?.metrics.length;
    if (n !== 15) throw new Error(`${n} metrics collected, not 15`);
  }
  handle.stop();
  await client.close();
  await meterProvider.shutdown();
  return median(times) * 1000;
}

async function otelCost(port: number) {
  const off = { rate: [] as number[], cpu: [] as number[], calls: [] as number[] };
  const on = { rate: [] as number[], cpu: [] as number[], calls: [] as number[] };
  await otelRound(port, true, []); // warm-up
  // More rounds than the others, compared in pairs (each round with metrics against the round
  // without beside it): CPU per record moves by ±25% between single rounds on a loaded machine.
  for (let r = 0; r < OTEL_ROUNDS; r++) {
    for (const [side, m] of (r % 2 === 0
      ? [
          [off, false],
          [on, true],
        ]
      : [
          [on, true],
          [off, false],
        ]) as Array<[typeof off, boolean]>) {
      const x = await otelRound(port, m, side.calls);
      side.rate.push(x.rate);
      side.cpu.push(x.cpuPerRecord);
    }
  }
  const f = (n: number) => Math.round(n).toLocaleString("en-US");
  const pct = (a: number, b: number) => {
    const x = ((b - a) / a) * 100;
    return `${x >= 0 ? "+" : ""}${x.toFixed(1)}%`;
  };
  console.log(
    `OTel metrics off / on      : ${f(median(off.rate))} / ${f(median(on.rate))} rec/s   (instrumentClient, real MeterProvider, collected every ${process.env.BENCH_OTEL_INTERVAL ?? 100} ms)`,
  );
  console.log(
    `  rounds off / on          : ${off.rate.map(f).join(", ")} / ${on.rate.map(f).join(", ")}`,
  );
  console.log(
    `  reportUsage call, median : ${(median(off.calls) * 1000).toFixed(2)} / ${(median(on.calls) * 1000).toFixed(2)} µs   (${pct(median(off.calls), median(on.calls))}; target <= +10%)`,
  );
  const collect = await otelCollectCost(port);
  const rate = median(off.rate);
  console.log(
    `  one collection           : ${collect.toFixed(0)} µs (14 metrics, median of 2,000) = ${(collect / (rate * 0.1)).toFixed(3)} µs per record at ${f(rate)} rec/s collected every 100 ms, ${(collect / (rate * 60)).toFixed(5)} µs every 60 s`,
  );
  const pairs = on.cpu.map((c, i) => c / (off.cpu[i] as number));
  const ratio = median(pairs);
  console.log(
    `  CPU per record           : ${median(off.cpu).toFixed(1)} / ${median(on.cpu).toFixed(1)} µs (medians); on/off per pair of rounds, median ${ratio.toFixed(3)} (${ratio >= 1 ? "+" : ""}${((ratio - 1) * 100).toFixed(1)}%; target <= +10%); pairs: ${pairs.map((x) => x.toFixed(2)).join(", ")}`,
  );
}

async function main() {
  if (findMosquitto() === undefined) {
    console.error("npm run bench needs mosquitto (apt-get install mosquitto)");
    process.exit(1);
  }
  // mosquitto advertises max_inflight_messages (default 20) as its MQTT 5 receive maximum, which
  // billing-sdk honours (raw mqtt.js does not): give both sides the same window.
  const broker = await Mosquitto.start({ extra: [`max_inflight_messages ${WINDOW}`] });
  // A subscriber on every topic, in a process of its own: an MQTT 5 broker answers a publish that
  // no one subscribes to with PUBACK 0x10 and drops it, which the SDK (not raw mqtt.js) holds and
  // sends again. Both sides publish to a subscribed topic, as in production.
  const listener = spawn(
    "mosquitto_sub",
    ["-h", "127.0.0.1", "-p", String(broker.plainPort), "-V", "mqttv5", "-q", "0", "-t", "#"],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  await sleep(500); // subscribed
  try {
    const bytes = await memoryPerRecord(); // first, on a quiet heap
    const raw: number[] = [];
    const sdk: number[] = [];
    const spooled: number[] = [];
    const callTimes: number[] = [];
    const spoolDir = mkdtempSync(join(tmpdir(), "billing-bench-"));
    await rawRound(broker.plainPort); // warm-up
    await sdkRound(broker.plainPort, []);
    for (let r = 0; r < ROUNDS; r++) {
      raw.push(await rawRound(broker.plainPort));
      sdk.push(await sdkRound(broker.plainPort, callTimes));
      spooled.push(await sdkRound(broker.plainPort, [], join(spoolDir, `round-${r}.db`)));
    }
    rmSync(spoolDir, { recursive: true, force: true });
    const rawRate = median(raw);
    const sdkRate = median(sdk);
    const spoolRate = median(spooled);
    const f = (n: number) => Math.round(n).toLocaleString("en-US");
    console.log(`records per round: ${N}, in-flight window: ${WINDOW}, rounds: ${ROUNDS} (median)`);
    console.log(
      `raw mqtt.js (pre-encoded)  : ${f(rawRate)} msg/s   rounds: ${raw.map(f).join(", ")}`,
    );
    console.log(
      `billing-sdk reportUsage    : ${f(sdkRate)} rec/s   rounds: ${sdk.map(f).join(", ")}`,
    );
    console.log(`ratio sdk/raw              : ${(sdkRate / rawRate).toFixed(2)}   (target >= 0.8)`);
    console.log(
      `billing-sdk + SQLite spool : ${f(spoolRate)} rec/s   rounds: ${spooled.map(f).join(", ")}`,
    );
    console.log(
      `ratio spool/raw            : ${(spoolRate / rawRate).toFixed(2)}   (target >= 0.5; WAL, synchronous=NORMAL)`,
    );
    console.log(
      `client CPU per record      : raw ${median(cpu.raw).toFixed(1)} µs, sdk ${median(cpu.sdk).toFixed(1)} µs`,
    );
    console.log(
      `reportUsage call, median   : ${(median(callTimes) * 1000).toFixed(1)} µs   (target <= 20 µs)`,
    );
    console.log(
      `memory per queued record   : ${Number.isNaN(bytes) ? "n/a (run with --expose-gc)" : `${Math.round(bytes)} B`}   (target <= 1024 B; heap + array buffers)`,
    );
    if (process.env.BENCH_OTEL !== "0") await otelCost(broker.plainPort);
  } finally {
    listener.kill();
    await broker.close();
  }
  await batchBench(); // issue 13: many records per message (its own broker)
}

await main();
