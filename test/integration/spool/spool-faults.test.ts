import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MqttClient } from "mqtt";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { BillingClient, getBillingClient } from "../../../src/index.js";
import { SqliteSpool } from "../../../src/spool/index.js";
import { makePki, type TestPki } from "../../helpers/certs.js";
import { durableBackend, tlsClientOptions } from "../../helpers/fixtures.js";
import { Mosquitto } from "../../helpers/mosquitto.js";
import { mosquittoAvailable } from "../../helpers/require-broker.js";
import { sleep, waitUntil } from "../../helpers/time.js";

// Fault tests for the durable spool, against a real mosquitto (TLS + password). The broker keeps
// its queue across a clean stop (persistence), and the backend holds a persistent session, so
// what the broker acknowledged reaches the backend even across restarts: what is measured is
// the SDK's part of the chain.
const users = { svc: "svc-pass", backend: "backend-pass" };
const root = new URL("../../..", import.meta.url).pathname;

describe.runIf(mosquittoAvailable())("spool fault tests (real mosquitto)", () => {
  let pki: TestPki;
  let broker: Mosquitto;
  let backend: MqttClient;
  let dir: string;
  const seen = new Map<string, number>(); // id -> deliveries
  const usageOf = new Map<string, Set<bigint>>(); // id -> the usage values delivered under it
  // The soak test keeps no per-id state (it would dwarf the heap it measures): a count only.
  const soak = { on: false, delivered: 0, distinctUsage: new Uint8Array(200_000) };
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    pki = makePki();
    dir = mkdtempSync(join(tmpdir(), "billing-faults-"));
    broker = await Mosquitto.start({
      pki,
      users,
      plain: true,
      persistent: true,
      extra: ["max_inflight_messages 200"],
    });
    backend = await durableBackend(broker.plainPort, "backend-faults", users.backend, (r) => {
      if (soak.on) {
        soak.delivered++;
        if (r.usage < 200_000n) soak.distinctUsage[Number(r.usage)] = 1;
        return;
      }
      seen.set(r.id, (seen.get(r.id) ?? 0) + 1);
      usageOf.set(r.id, (usageOf.get(r.id) ?? new Set()).add(r.usage));
    });
  });
  afterAll(async () => {
    for (const c of children) c.kill("SIGKILL");
    await backend?.endAsync(true);
    await broker?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  afterEach(async () => {
    await getBillingClient()
      ?.close(1000)
      .catch(() => {});
  });

  function child(mode: "produce" | "drain", spool: string, count = 0) {
    const proc = spawn("node", ["--import", "tsx", join(root, "test/helpers/producer-child.ts")], {
      cwd: root,
      env: {
        ...process.env,
        BILLING_CHILD: JSON.stringify({
          port: broker.tlsPort,
          ca: pki.ca,
          username: "svc",
          password: users.svc,
          spool,
          count,
          mode,
        }),
      },
      stdio: ["ignore", "pipe", "inherit"],
    });
    children.push(proc);
    const lines: string[] = [];
    let buf = "";
    proc.stdout?.on("data", (d: Buffer) => {
      buf += d.toString();
      const parts = buf.split("\n");
      buf = parts.pop() ?? "";
      lines.push(...parts);
    });
    const exited = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));
    return { proc, lines, exited };
  }

  it("a producer SIGKILLed mid-stream loses nothing it had confirmed; a second process is refused", async () => {
    const spool = join(dir, "killed.db");
    const first = child("produce", spool);
    await waitUntil(() => first.lines.length > 3000, 30_000, "3000 confirmed records");
    // The spool is held: a second process is refused with a clear error.
    const second = child("drain", spool);
    expect(await second.exited).toBe(1);
    expect(second.lines.join("\n")).toMatch(/error SPOOL: .*in use by another process/);
    first.proc.kill("SIGKILL");
    await first.exited;
    const confirmed = first.lines.filter((l) => /^[0-9a-f]{8}-/.test(l));
    // Restart: a new process sends what the spool kept.
    const restart = child("drain", spool);
    expect(await restart.exited).toBe(0);
    expect(restart.lines.at(-1)).toMatch(/^drained \d+$/);
    await waitUntil(
      () => confirmed.every((id) => seen.has(id)),
      30_000,
      `all ${confirmed.length} confirmed ids at the backend`,
    );
    const left = new SqliteSpool({ path: spool });
    expect(left.count()).toBe(0);
    left.close();
  });

  it("broker restarted several times while 50,000 records are reported: all arrive, duplicates share ids", async () => {
    const client = new BillingClient(
      tlsClientOptions(broker.tlsPort, pki.ca, "svc", users.svc, {
        maxQueued: 60_000,
        spool: new SqliteSpool({ path: join(dir, "restarts.db") }),
      }),
    );
    await client.connect();
    const ids: string[] = [];
    const N = 50_000;
    for (let i = 0; i < N; i += 100) {
      const batch = await Promise.all(
        Array.from({ length: 100 }, (_, j) =>
          client.reportUsage({ apiKey: "k", module: "llm", model: "m", usage: i + j }),
        ),
      );
      ids.push(...batch);
      if (i > 0 && i % 12_500 === 0) {
        await broker.stop("SIGTERM");
        await broker.start();
        await waitUntil(() => client.isConnected(), 10_000, "reconnected");
      }
    }
    await client.flush(120_000);
    await waitUntil(() => ids.every((id) => seen.has(id)), 60_000, "every id at the backend");
    expect(new Set(ids).size).toBe(N);
    expect(client.stats().reconnects).toBeGreaterThanOrEqual(3);
    // A duplicate is the same record again: under each id, only the usage sent with it.
    ids.forEach((id, i) => {
      const usages = usageOf.get(id);
      if (usages?.size !== 1 || !usages.has(BigInt(i))) {
        throw new Error(`id ${id} carried ${[...(usages ?? [])].join(",")}, sent ${i}`);
      }
    });
    const duplicates = ids.reduce((n, id) => n + ((seen.get(id) ?? 0) - 1), 0);
    console.log(`restarts: ${client.stats().reconnects}, duplicate deliveries: ${duplicates}`);
    await client.close();
  }, 240_000);

  it("soak: 200,000 records with the broker flapping; heap and spool back to baseline", async () => {
    const path = join(dir, "soak.db");
    const gc = (globalThis as { gc?: () => void }).gc;
    const heap = () => {
      gc?.();
      return process.memoryUsage().heapUsed;
    };
    const opts = () =>
      tlsClientOptions(broker.tlsPort, pki.ca, "svc", users.svc, {
        maxQueued: 200_000,
        spool: new SqliteSpool({ path }),
      });
    const warm = new BillingClient(opts());
    await warm.connect();
    await warm.reportUsage({ apiKey: "k", module: "llm", model: "m", usage: 0 });
    await warm.close();
    const baseSize = statSync(path).size;
    soak.on = true;
    const baseHeap = heap();
    const client = new BillingClient(opts());
    await client.connect();
    const N = 200_000;
    for (let i = 0; i < N; i += 200) {
      await Promise.all(
        Array.from({ length: 200 }, (_, j) =>
          client.reportUsage({ apiKey: "k", module: "llm", model: "m", usage: i + j }),
        ),
      );
      if (i > 0 && i % 40_000 === 0) {
        await broker.stop("SIGTERM");
        await sleep(200); // records pile up in the spool meanwhile
        await broker.start();
      }
    }
    await client.flush(180_000);
    const arrived = () => soak.distinctUsage.reduce((n, v) => n + v, 0);
    await waitUntil(() => arrived() === N, 60_000, "every record at the backend");
    expect(soak.delivered).toBeGreaterThanOrEqual(N);
    expect(client.stats()).toMatchObject({ queued: 0, inFlight: 0, published: N });
    await client.close();
    soak.on = false;
    expect(statSync(path).size).toBeLessThanOrEqual(baseSize + 64 * 1024);
    expect(gc).toBeTypeOf("function"); // vitest.config.ts passes --expose-gc
    console.log(
      `soak: heap ${((heap() - baseHeap) / 1e6).toFixed(1)} MB over baseline, spool ${statSync(path).size} B (baseline ${baseSize} B), deliveries ${soak.delivered}`,
    );
    expect(heap() - baseHeap).toBeLessThan(16 * 1024 * 1024);
  }, 300_000);
});
