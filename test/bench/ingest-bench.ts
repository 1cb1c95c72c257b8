// npm run bench (part 3): ingest throughput into PostgreSQL beside the producer's rate, in one
// run, on a local mosquitto and PostgreSQL started here (free ports, temp dirs, stopped at the
// end). One `billing-sdk ingest` process (compiled, from dist/) stores into the server.
//
// Method, N records each:
// 1. producer alone: a BillingClient reports N records, 100 per event-loop turn, until flush()
//    says all were acknowledged; the ingest process is away, its persistent session queues them.
// 2. ingest alone: the ingest process starts and drains that backlog. Its rate is the steady one,
//    from the first committed rows to the N-th (polled on the small rollup table, whose records
//    column is committed with the rows); the process start (node, PostgreSQL connection and
//    migrations, MQTT session) is printed apart.
// 3. both at once: the producer reports N more while ingest runs; how long after the producer's
//    flush the last record was stored says whether ingest keeps up.
// CPU per record of each process (from /proc) says what bounds the rates: on a machine whose
// cores the producer, the broker, the ingest process and PostgreSQL all share, the sum does.
// Numbers move with the machine (2 cores shared here): compare the ratio, not absolutes.

import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { availableParallelism } from "node:os";
import pg from "pg";
import { findMosquitto, Mosquitto } from "../helpers/mosquitto.js";
import { findPostgresBin, PostgresServer } from "../helpers/postgres.js";
import { cpuMs } from "./process-cpu.js";

const dist = new URL("../../dist/", import.meta.url).href;
const { BillingClient } = (await import(
  `${dist}src/index.js`
)) as typeof import("../../src/index.js");
const cli = new URL("../../dist/src/cli/main.js", import.meta.url).pathname;

const N = Number(process.env.BENCH_INGEST_RECORDS ?? 50_000);
const f = (n: number) => Math.round(n).toLocaleString("en-US");
const us = (ms: number, records: number) => ((ms * 1000) / records).toFixed(1);
const metadata = { prompt_tokens: 100, completion_tokens: 50, temperature: 0.7 };

async function startIngest(db: PostgresServer, port: number): Promise<ChildProcess> {
  const proc = spawn(
    "node",
    [
      cli,
      "ingest",
      "--postgres",
      db.url,
      "--broker",
      `mqtt://127.0.0.1:${port}`,
      "--client-id",
      "bench-ingest",
      "--progress",
      "0",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let log = "";
  proc.stderr?.on("data", (d: Buffer) => {
    log += d.toString();
  });
  const end = Date.now() + 30_000;
  while (!log.includes("ingest: consuming")) {
    if (proc.exitCode !== null || Date.now() > end) throw new Error(`ingest did not start: ${log}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return proc;
}

async function stop(proc: ChildProcess): Promise<void> {
  const exited = once(proc, "exit");
  proc.kill("SIGTERM");
  await exited;
}

async function produce(port: number): Promise<number> {
  const client = new BillingClient({
    brokerHost: "127.0.0.1",
    brokerPort: port,
    tls: false,
    inFlightWindow: 1000,
    maxQueued: N,
    heartbeatIntervalMs: 0,
    clientId: "bench-producer",
  });
  await client.connect();
  const t0 = performance.now();
  for (let i = 0; i < N; i += 100) {
    const calls: Array<Promise<string>> = [];
    for (let j = 0; j < 100; j++) {
      calls.push(
        client.reportUsage({
          apiKey: "bench-key",
          module: "llm",
          model: "gpt-4",
          usage: 150,
          metadata,
        }),
      );
    }
    await Promise.all(calls);
    await new Promise<void>((r) => setImmediate(r));
  }
  await client.flush(120_000);
  const ms = performance.now() - t0;
  await client.close();
  return ms;
}

async function main() {
  if (findMosquitto() === undefined || findPostgresBin() === undefined) {
    console.error(
      "the ingest bench needs mosquitto and PostgreSQL (apt-get install mosquitto postgresql)",
    );
    process.exit(1);
  }
  const [broker, db] = await Promise.all([
    Mosquitto.start({ extra: ["max_inflight_messages 1000"] }),
    PostgresServer.start(),
  ]);
  const pool = new pg.Pool({ connectionString: db.url, max: 1 });
  // The rollups' count, committed with the rows: a few rows to read, where count(*) over
  // usage_records would cost PostgreSQL more with every poll.
  const rows = async () =>
    Number(
      (await pool.query("SELECT coalesce(sum(records), 0) AS n FROM billing.usage_minutely"))
        .rows[0].n,
    );
  const until = async (n: number) => {
    while ((await rows()) < n) await new Promise((r) => setTimeout(r, 10));
    return performance.now();
  };
  try {
    // The session exists (and queues) from here on.
    await stop(await startIngest(db, broker.plainPort));

    const cpu0 = { self: process.cpuUsage(), broker: cpuMs(broker.pid) };
    const producerMs = await produce(broker.plainPort);
    const own = process.cpuUsage(cpu0.self);
    const producerCpu = {
      self: (own.user + own.system) / 1000,
      broker: cpuMs(broker.pid) - cpu0.broker,
    };

    const t0 = performance.now();
    let ingest = await startIngest(db, broker.plainPort);
    const startMs = performance.now() - t0;
    const c0 = { ingest: cpuMs(ingest.pid), db: cpuMs(db.pid), broker: cpuMs(broker.pid) };
    let first = await rows();
    while (first === 0) {
      await new Promise((r) => setTimeout(r, 10));
      first = await rows();
    }
    const tFirst = performance.now();
    const tLast = await until(N);
    const ingestCpu = {
      ingest: cpuMs(ingest.pid) - c0.ingest,
      db: cpuMs(db.pid) - c0.db,
      broker: cpuMs(broker.pid) - c0.broker,
    };

    const p0 = performance.now();
    const liveProducerMs = await produce(broker.plainPort);
    const behindMs = (await until(2 * N)) - (p0 + liveProducerMs);
    await stop(ingest);
    ingest = undefined as never;

    const producerRate = N / (producerMs / 1000);
    const ingestRate = first >= N ? Number.NaN : (N - first) / ((tLast - tFirst) / 1000);
    const ingestUs = (ingestCpu.ingest + ingestCpu.db + ingestCpu.broker) * (1000 / N);
    console.log(
      `ingest bench: ${f(N)} records per phase, one ingest process, PostgreSQL ${db.port}`,
    );
    console.log(
      `producer alone (reportUsage → broker)   : ${f(producerRate)} rec/s   (CPU per record: producer ${us(producerCpu.self, N)} µs, mosquitto ${us(producerCpu.broker, N)} µs)`,
    );
    console.log(
      `ingest alone (broker → PostgreSQL)      : ${f(ingestRate)} rec/s   (a backlog of ${f(N)}; steady: from the first ${f(first)} rows committed to the last; process start to consuming ${f(startMs)} ms)`,
    );
    console.log(
      `ingest CPU per record                   : ingest process ${us(ingestCpu.ingest, N)} µs, PostgreSQL ${us(ingestCpu.db, N)} µs, mosquitto ${us(ingestCpu.broker, N)} µs; ${ingestUs.toFixed(1)} µs in all on ${availableParallelism()} cores: at most ${f((availableParallelism() * 1e6) / ingestUs)} rec/s here`,
    );
    console.log(
      `ratio ingest/producer                   : ${(ingestRate / producerRate).toFixed(2)}   (target >= 1: ingest keeps up)`,
    );
    console.log(
      `both at once                            : producer ${f(N / (liveProducerMs / 1000))} rec/s; last record stored ${f(Math.max(0, behindMs))} ms after the producer's flush`,
    );
  } finally {
    await pool.end();
    await broker.close();
    await db.close();
  }
}

await main();
