// npm run bench (part 3): ingest throughput into PostgreSQL beside the producer's rate, in one
// run, on a local mosquitto and PostgreSQL started here (free ports, temp dirs, stopped at the
// end). One `billing-sdk ingest` process (compiled, from dist/) stores into the server.
//
// Method, N records each:
// 1. producer alone: a BillingClient (warmed up first on another topic prefix) reports N
//    records, 100 per event-loop turn, until flush() says all were acknowledged; the ingest
//    process is away, its persistent session queues them.
// 2. ingest alone: the ingest process starts and drains that backlog. Its rate is the steady
//    one, from the first committed rows to the N-th (polled every 10 ms on the small rollup
//    table, whose records column is committed with the rows); the time to start and to the
//    first commit is printed apart.
// 3. both at once: the producer reports N more while ingest runs; how long after the producer's
//    last PUBACK the last record was stored says whether ingest keeps up. The CPU of each process
//    over this phase (from /proc, 10 ms ticks; PostgreSQL: the postmaster and its children, the
//    polling backend taken out), per record and as a share of the cores: where each record's
//    cost goes, and whether the rate is bound by CPU (the cores near full) or by waiting.
// Numbers move with the machine (2 cores shared here): compare the ratio, not absolutes.

import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { availableParallelism } from "node:os";
import pg from "pg";
import { findMosquitto, Mosquitto } from "../helpers/mosquitto.js";
import { findPostgresBin, PostgresServer } from "../helpers/postgres.js";
import { sleep } from "../helpers/time.js";
import { cpuMs } from "./process-cpu.js";
import { reportInTurns } from "./report-in-turns.js";

const dist = new URL("../../dist/", import.meta.url).href;
const { BillingClient } = (await import(
  `${dist}src/index.js`
)) as typeof import("../../src/index.js");
const cli = new URL("../../dist/src/cli/main.js", import.meta.url).pathname;

const N = Number(process.env.BENCH_INGEST_RECORDS ?? 50_000);
const f = (n: number) => Math.round(n).toLocaleString("en-US");
const us = (ms: number, records: number) => ((ms * 1000) / records).toFixed(1);

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
    if (proc.exitCode !== null || proc.signalCode !== null || Date.now() > end) {
      proc.kill("SIGKILL");
      throw new Error(`ingest did not start: ${log}`);
    }
    await sleep(20);
  }
  return proc;
}

async function stop(proc: ChildProcess): Promise<void> {
  const exited = once(proc, "exit");
  proc.kill("SIGTERM");
  await exited;
}

interface Produced {
  /** From the first call to the last PUBACK (flush), ms. */
  ms: number;
  /** When flush() resolved (performance.now()). */
  endAt: number;
  /** This process's CPU over the same time, ms. */
  cpuMs: number;
}

async function produce(port: number, records = N, topicPrefix = "billing"): Promise<Produced> {
  const client = new BillingClient({
    brokerHost: "127.0.0.1",
    brokerPort: port,
    tls: false,
    inFlightWindow: 1000,
    maxQueued: records,
    heartbeatIntervalMs: 0,
    clientId: `bench-producer-${topicPrefix}`,
    topicPrefix,
    logger: () => {},
  });
  await client.connect();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await reportInTurns(client, records);
  await client.flush(120_000);
  const endAt = performance.now();
  const cpu = process.cpuUsage(c0);
  await client.close();
  return { ms: endAt - t0, endAt, cpuMs: (cpu.user + cpu.system) / 1000 };
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
  // One connection polls (its backend's CPU is taken out of PostgreSQL's below) the rollups'
  // count, committed with the rows: a few rows to read, where count(*) over usage_records
  // would cost PostgreSQL more with every poll.
  const poll = new pg.Client({ connectionString: db.url });
  await poll.connect();
  const pollPid = Number((await poll.query("SELECT pg_backend_pid() AS pid")).rows[0].pid);
  const dbCpu = () => cpuMs(db.pid) - cpuMs(pollPid);
  let ingest: ChildProcess | undefined;
  const rows = async () =>
    Number(
      (await poll.query("SELECT coalesce(sum(records), 0) AS n FROM billing.usage_minutely"))
        .rows[0].n,
    );
  /** Polls until `n` rows are stored; throws past 5 minutes, or when ingest exited. */
  const until = async (n: number): Promise<{ at: number; rows: number }> => {
    const deadline = performance.now() + 300_000;
    for (;;) {
      const stored = await rows();
      if (stored >= n) return { at: performance.now(), rows: stored };
      const gone = ingest !== undefined && (ingest.exitCode !== null || ingest.signalCode !== null);
      if (gone || performance.now() > deadline) {
        throw new Error(`ingest stopped at ${stored} of ${n} rows (exit ${ingest?.exitCode})`);
      }
      await sleep(10);
    }
  };
  try {
    // The session exists (and queues) from here on.
    await stop(await startIngest(db, broker.plainPort));

    // Warm-up on another prefix (a QoS 0 listener of its own: without a subscriber an MQTT 5
    // broker answers PUBACK 0x10, and the SDK holds the records): the producer's rate and CPU
    // below are those of compiled code, as in a service that runs for hours.
    const listener = spawn(
      "mosquitto_sub",
      ["-h", "127.0.0.1", "-p", String(broker.plainPort), "-V", "mqttv5", "-t", "warm-up/#"],
      { stdio: ["ignore", "ignore", "inherit"] },
    );
    await sleep(500); // subscribed
    await produce(broker.plainPort, Math.min(N, 20_000), "warm-up");
    listener.kill();
    const b0 = cpuMs(broker.pid);
    const alone = await produce(broker.plainPort);
    const producerBrokerCpu = cpuMs(broker.pid) - b0;

    const t0 = performance.now();
    ingest = await startIngest(db, broker.plainPort);
    const startMs = performance.now() - t0;
    const firstRows = await until(1);
    const last = await until(N);

    // Both at once, and the CPU of each process over it: every record goes the whole way
    // (reportUsage, mosquitto, decoding and checking in the ingest process, PostgreSQL) inside
    // this window, which a drained backlog does not show (the broker sends it, and the ingest
    // process decodes it, as soon as the session resumes).
    const cpu0 = {
      self: process.cpuUsage(),
      broker: cpuMs(broker.pid),
      ingest: cpuMs(ingest.pid),
      db: dbCpu(),
    };
    const l0 = performance.now();
    const live = await produce(broker.plainPort);
    const stored = await until(2 * N);
    const own = process.cpuUsage(cpu0.self);
    const cpu = {
      producer: (own.user + own.system) / 1000,
      broker: cpuMs(broker.pid) - cpu0.broker,
      ingest: cpuMs(ingest.pid) - cpu0.ingest,
      db: dbCpu() - cpu0.db,
    };
    const windowMs = stored.at - l0;
    const behindMs = stored.at - live.endAt;
    await stop(ingest);
    ingest = undefined;

    const producerRate = N / (alone.ms / 1000);
    // Steady: from the first committed rows to the N-th; n/a when that is under 100 ms.
    const steadyMs = last.at - firstRows.at;
    const ingestRate = steadyMs < 100 ? Number.NaN : (N - firstRows.rows) / (steadyMs / 1000);
    const cores = availableParallelism();
    const share = (ms: number) => `${((ms / windowMs) * 100).toFixed(0)}%`;
    const total = cpu.producer + cpu.broker + cpu.ingest + cpu.db;
    console.log(
      `ingest bench: ${f(N)} records per phase, one ingest process, PostgreSQL ${db.port}`,
    );
    console.log(
      `producer alone (reportUsage → broker)   : ${f(producerRate)} rec/s   (warmed up; CPU per record: producer ${us(alone.cpuMs, N)} µs, mosquitto ${us(producerBrokerCpu, N)} µs)`,
    );
    console.log(
      `ingest alone (broker → PostgreSQL)      : ${Number.isNaN(ingestRate) ? "n/a (too fast to time: raise BENCH_INGEST_RECORDS)" : `${f(ingestRate)} rec/s`}   (a backlog of ${f(N)}; steady: from the first ${f(firstRows.rows)} rows committed, ${f(firstRows.at - t0)} ms after the process started, to the last; start to "consuming" ${f(startMs)} ms)`,
    );
    console.log(
      `ratio ingest/producer                   : ${(ingestRate / producerRate).toFixed(2)}   (target >= 1: ingest keeps up)`,
    );
    console.log(
      `both at once                            : producer ${f(N / (live.ms / 1000))} rec/s; last record stored ${f(Math.max(0, behindMs))} ms after the producer's last PUBACK (${f(N / (windowMs / 1000))} rec/s end to end)`,
    );
    console.log(
      `  CPU per record, end to end            : producer ${us(cpu.producer, N)} µs (with this bench's polling), mosquitto ${us(cpu.broker, N)} µs, ingest process ${us(cpu.ingest, N)} µs, PostgreSQL ${us(cpu.db, N)} µs (its polling backend taken out): ${us(total, N)} µs in all`,
    );
    console.log(
      `  CPU use                               : producer ${share(cpu.producer)}, mosquitto ${share(cpu.broker)}, ingest process ${share(cpu.ingest)}, PostgreSQL ${share(cpu.db)} of one core; ${share(total)} of the ${cores * 100}% of ${cores} cores (${f(windowMs)} ms)`,
    );
  } finally {
    ingest?.kill("SIGKILL");
    await poll.end();
    await broker.close();
    await db.close();
  }
}

await main();
