import { spawn } from "node:child_process";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../../../src/cli/main.js";
import {
  BillingClient,
  type BillingClientOptions,
  getBillingClient,
} from "../../../../src/index.js";
import { AedesBroker } from "../../../helpers/aedes-broker.js";
import { captureIo } from "../../../helpers/cli-io.js";
import { LatencyProxy } from "../../../helpers/latency-proxy.js";

// Shutdown and limits found by the adversarial review of issue 9: every call settles in a
// bounded time, and close() says "lost" only of what was really lost.

const root = new URL("../../../..", import.meta.url).pathname;
let deaf: AedesBroker; // never answers a PUBLISH on billing/report or billing/keys/*
beforeAll(async () => {
  deaf = await AedesBroker.create({
    ignorePublish: (t) => t === "billing/report" || t.startsWith("billing/keys/"),
  });
});
afterAll(async () => deaf.close());
afterEach(async () => {
  await getBillingClient()
    ?.close(100)
    .catch(() => {});
});

const logs: string[] = [];
const options = (port: number, extra: BillingClientOptions = {}): BillingClientOptions => ({
  brokerHost: "127.0.0.1",
  brokerPort: port,
  tls: false,
  heartbeatIntervalMs: 0,
  reconnectBaseMs: 50,
  reconnectMaxMs: 200,
  logger: (level, message) => logs.push(`${level}: ${message}`),
  ...extra,
});
const report = (c: BillingClient) =>
  c.reportUsage({ apiKey: "k", module: "llm", model: "m", usage: 1 });

describe("close()", () => {
  it("with PUBACKs that never come: rejects TIMEOUT in time, and the process exits by itself", async () => {
    // A real process: it can only exit once close() has let go of its socket.
    const child = spawn(
      "node",
      ["--import", "tsx", join(root, "test/helpers/close-child.ts"), String(deaf.port), "300"],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    const started = Date.now();
    const code = await new Promise<number | null>((resolve) => {
      const kill = setTimeout(() => child.kill("SIGKILL"), 20_000);
      child.once("exit", (c) => {
        clearTimeout(kill);
        resolve(c);
      });
    });
    expect(code, out).toBe(0);
    expect(out).toMatch(/close rejected: \[TIMEOUT\] closed with 10 usage records/);
    // Start-up, the flush deadline (300 ms) and the bounded goodbye (2 s): never the 45 s of a
    // keepalive timeout that a socket left open would cost.
    expect(Date.now() - started).toBeLessThan(10_000);
  }, 30_000);

  it("counts PUBACKs that arrive during the goodbye: nothing reported lost that was delivered", async () => {
    const broker = await AedesBroker.create();
    const slow = await LatencyProxy.start(broker.port, 100);
    try {
      logs.length = 0;
      const client = new BillingClient(options(slow.port));
      await client.connect(3000);
      for (let i = 0; i < 10; i++) await report(client);
      // The flush deadline (50 ms) passes before the PUBACKs (200 ms round trip) arrive.
      await client.close(50);
      expect(client.stats()).toMatchObject({ published: 10, queued: 0 });
      expect(logs.filter((l) => l.includes("lost"))).toEqual([]);
    } finally {
      await slow.stop();
      await broker.close();
    }
  });

  it("a bad timeout is refused without closing, and close() still works after", async () => {
    const client = new BillingClient(options(deaf.port));
    await expect(client.close(-1)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(client.close(Number.NaN)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    expect(getBillingClient()).toBe(client);
    await client.close(100);
    expect(getBillingClient()).toBeUndefined();
  });
});

describe("timeouts at and past the largest timer", () => {
  it("Infinity and 2^31 ms mean no deadline, not 1 ms", async () => {
    const client = new BillingClient(options(deaf.port));
    await client.connect(3000);
    await report(client);
    for (const ms of [Number.POSITIVE_INFINITY, 2 ** 31, 2 ** 40]) {
      const outcome = await Promise.race([
        client.flush(ms).then(
          () => "resolved",
          (e: Error) => `rejected: ${e.message}`,
        ),
        new Promise((r) => setTimeout(() => r("still waiting"), 100)),
      ]);
      expect(outcome, String(ms)).toBe("still waiting");
    }
    await expect(client.flush(-5)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(client.connect(Number.NaN)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
  });

  it("options past the largest timer are refused, so no retry loop runs every millisecond", () => {
    for (const extra of [
      { reconnectBaseMs: 2 ** 31 },
      { reconnectMaxMs: 1e10 },
      { closeTimeoutMs: 2 ** 31 },
      { connectTimeoutMs: Number.POSITIVE_INFINITY },
      { heartbeatIntervalMs: 2 ** 32 },
      { keepaliveSeconds: 65536 },
    ]) {
      expect(() => new BillingClient(options(deaf.port, extra)), JSON.stringify(extra)).toThrow(
        expect.objectContaining({ code: "INVALID_ARGUMENT" }),
      );
    }
    expect(getBillingClient()).toBeUndefined();
  });
});

describe("the CLI against a broker that never answers a PUBLISH", () => {
  it("doctor and keys push exit within their deadlines", async () => {
    const { mkdtempSync, writeFileSync, rmSync } = await import("node:fs");
    const { join } = await import("node:path");
    const { tmpdir } = await import("node:os");
    const dir = mkdtempSync(join(tmpdir(), "billing-deaf-"));
    try {
      const conn = ["--broker", `mqtt://127.0.0.1:${deaf.port}`];
      const doctor = captureIo();
      const t0 = Date.now();
      expect(await main(["doctor", "--wait-keys", "0.2", ...conn], doctor.io)).toBe(1);
      expect(doctor.text()).toMatch(/✗ publish +billing\/keys\/request: TIMEOUT/);
      const file = join(dir, "keys.json");
      writeFileSync(file, JSON.stringify([{ key: "k", appId: "a" }]));
      const push = captureIo();
      expect(await main(["keys", "push", file, "--insecure-unsigned", ...conn], push.io)).toBe(1);
      expect(push.text()).toMatch(/no PUBACK/);
      expect(Date.now() - t0).toBeLessThan(25_000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
