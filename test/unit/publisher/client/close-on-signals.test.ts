import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BillingClient, closeOnSignals } from "../../../../src/index.js";
import { AedesBroker } from "../../../helpers/aedes-broker.js";
import { decodeRecords } from "../../../helpers/fixtures.js";
import { LatencyProxy } from "../../../helpers/latency-proxy.js";
import { MemorySpool } from "../../../helpers/memory-spool.js";
import { freePort } from "../../../helpers/mosquitto.js";
import { sleep, waitUntil } from "../../../helpers/time.js";

// A child process reports records in a loop against an embedded broker behind a proxy that adds
// 40 ms each way (so that records are always waiting for their PUBACK), and gets SIGTERM
// mid-stream. Every id the child printed had its reportUsage resolved.
const root = new URL("../../../..", import.meta.url).pathname;
let broker: AedesBroker;
let proxy: LatencyProxy;
const children: ChildProcess[] = [];
beforeAll(async () => {
  broker = await AedesBroker.create();
  proxy = await LatencyProxy.start(broker.port, 40);
});
afterAll(async () => {
  for (const c of children) c.kill("SIGKILL");
  await proxy.stop();
  await broker.close();
});

async function runChild(mode: "on" | "off" | "own" | "once" | "se-before" | "se-after") {
  broker.published.splice(0);
  const child = spawn("node", ["--import", "tsx", join(root, "test/helpers/signal-child.ts")], {
    cwd: root,
    env: {
      ...process.env,
      BILLING_CHILD: JSON.stringify({ port: proxy.port, mode, timeoutMs: 20_000 }),
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
  await waitUntil(() => stdout.includes("ready"), 30_000, "the child reporting");
  child.kill("SIGTERM");
  const [code, signal] = await exited;
  const resolved = stdout.split("\n").filter((l) => /^[0-9a-f-]{36}$/.test(l));
  const arrived = () => new Set(decodeRecords(broker.payloads("billing/report")).map((r) => r.id));
  return { code, signal, stdout, stderr, resolved, arrived };
}

describe("closeOnSignals: SIGTERM mid-stream in a child process", () => {
  it("with it, every record whose reportUsage resolved arrives, and the process dies by SIGTERM", async () => {
    const r = await runChild("on");
    expect(r.signal).toBe("SIGTERM"); // re-raised: exits the way it would have
    expect(r.code).toBeNull();
    const arrived = r.arrived();
    const missing = r.resolved.filter((id) => !arrived.has(id));
    expect(r.resolved.length).toBeGreaterThanOrEqual(200);
    expect(missing).toEqual([]);
    expect(r.stderr).toContain("SIGTERM: closing the billing client");
    expect(r.stderr).toContain("every accepted record was acknowledged");
  });

  it("without it, the records accepted but not yet acknowledged are lost (as the README says)", async () => {
    const r = await runChild("off");
    expect(r.signal).toBe("SIGTERM");
    // Whatever the proxy still held reaches the broker within its delay: wait it out.
    await sleep(500);
    const arrived = r.arrived();
    const lost = r.resolved.filter((id) => !arrived.has(id));
    expect(r.resolved.length).toBeGreaterThanOrEqual(200);
    expect(lost.length).toBeGreaterThan(0);
    // What arrived is a prefix of what was accepted: the lost ones are the last accepted.
    expect(
      r.resolved.slice(0, r.resolved.length - lost.length).every((id) => arrived.has(id)),
    ).toBe(true);
  });

  it.each(["own", "once"] as const)(
    "with an application listener of its own (%s) and exit: none, that listener decides how the process ends",
    async (mode) => {
      const r = await runChild(mode);
      expect(r.signal).toBeNull();
      expect(r.code).toBe(3);
      expect(r.stdout).toContain("own listener: exit 3 with 0 queued");
      const arrived = r.arrived();
      expect(r.resolved.filter((id) => !arrived.has(id))).toEqual([]);
    },
  );

  // signal-exit ends the process when it is the last listener: with the helper's listener kept
  // while it closes, it waits; before, it cut the flush short (installed after the helper) or
  // the process never ended (installed before).
  it.each(["se-before", "se-after"] as const)(
    "beside a signal-exit-like listener (%s): nothing lost, and the process dies by SIGTERM",
    async (mode) => {
      const r = await runChild(mode);
      expect(r.signal).toBe("SIGTERM");
      const arrived = r.arrived();
      expect(r.resolved.filter((id) => !arrived.has(id))).toEqual([]);
      expect(r.stderr).toContain("every accepted record was acknowledged");
    },
  );
});

describe("closeOnSignals in this process", () => {
  it("refuses bad options, and its uninstall function removes its listeners", async () => {
    const client = new BillingClient({
      brokerHost: "127.0.0.1",
      brokerPort: await freePort(),
      tls: false,
      heartbeatIntervalMs: 0,
      logger: () => {},
    });
    try {
      expect(() => closeOnSignals(client, { signals: [] })).toThrow(/signals/);
      expect(() => closeOnSignals(client, { signals: ["SIGKILL"] })).toThrow(
        /not a signal that can be caught/,
      );
      expect(() => closeOnSignals(client, { signals: ["NOPE" as NodeJS.Signals] })).toThrow(/NOPE/);
      expect(() => closeOnSignals(client, { timeoutMs: -1 })).toThrow(/timeoutMs/);
      const before = process.listenerCount("SIGTERM");
      const uninstall = closeOnSignals(client);
      expect(process.listenerCount("SIGTERM")).toBe(before + 1);
      expect(process.listenerCount("SIGINT")).toBeGreaterThan(0);
      uninstall();
      expect(process.listenerCount("SIGTERM")).toBe(before);
    } finally {
      await client.close(100).catch(() => {});
    }
  });

  it("on a signal it closes the client and logs how it went; another listener keeps the process alive", async () => {
    const lines: string[] = [];
    const logger = (level: string, message: string) => void lines.push(`${level}: ${message}`);
    let own = 0;
    const ownListener = () => {
      own++;
    };
    process.on("SIGUSR2", ownListener); // the application's (exit: "none"): this process lives on
    try {
      for (const withRecord of [false, true]) {
        lines.length = 0;
        const client = new BillingClient({
          brokerHost: "127.0.0.1",
          brokerPort: await freePort(), // nothing there: a queued record is never acknowledged
          tls: false,
          heartbeatIntervalMs: 0,
          logger: () => {},
        });
        if (withRecord)
          await client.reportUsage({ apiKey: "k", module: "llm", model: "m", usage: 1 });
        closeOnSignals(client, { signals: ["SIGUSR2"], timeoutMs: 50, logger, exit: "none" });
        process.kill(process.pid, "SIGUSR2");
        await waitUntil(() => lines.length === 2, 5000, "closed");
        expect(lines[0]).toBe("info: SIGUSR2: closing the billing client");
        expect(lines[1]).toBe(
          withRecord
            ? "error: billing client closed: [TIMEOUT] closed with 1 usage records not acknowledged within 50 ms"
            : "info: billing client closed: every accepted record was acknowledged",
        );
        await expect(
          client.reportUsage({ apiKey: "k", module: "llm", model: "m", usage: 2 }),
        ).rejects.toThrow(/closed/i);
        expect(process.listenerCount("SIGUSR2")).toBe(1); // its own listener is gone, ours stays
        expect(() => closeOnSignals(client, { exit: "die" as "none" })).toThrow(/exit/);
      }
      expect(own).toBe(2);
    } finally {
      process.off("SIGUSR2", ownListener);
    }
  });

  // A close that ran out of time resolves when there is a spool (what is left stays there): the
  // helper said "every accepted record was acknowledged" all the same (a review found it).
  it("with a spool and records left, says they stay in the spool, not that all were acknowledged", async () => {
    const lines: string[] = [];
    const client = new BillingClient({
      brokerHost: "127.0.0.1",
      brokerPort: await freePort(),
      tls: false,
      heartbeatIntervalMs: 0,
      logger: () => {},
      spool: new MemorySpool(`close-on-signals-${Math.random()}`),
    });
    await client.reportUsage({ apiKey: "k", module: "llm", model: "m", usage: 1 });
    const logger = (level: string, message: string) => void lines.push(`${level}: ${message}`);
    const own = () => {};
    process.on("SIGUSR2", own);
    try {
      closeOnSignals(client, { signals: ["SIGUSR2"], timeoutMs: 50, logger, exit: "none" });
      process.kill(process.pid, "SIGUSR2");
      await waitUntil(() => lines.length === 2, 5000, "closed");
      expect(lines[1]).toBe(
        "error: billing client closed: 1 records not acknowledged stay in the spool for the next start",
      );
    } finally {
      process.off("SIGUSR2", own);
    }
  });
});
