import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AedesBroker } from "../../../helpers/aedes-broker.js";
import { decodeRecords } from "../../../helpers/fixtures.js";
import { LatencyProxy } from "../../../helpers/latency-proxy.js";
import { sleep, waitUntil } from "../../../helpers/time.js";

// A wrapper (npm, tsx, a shell) forwards the SIGTERM or Ctrl-C its child got too, a few ms to a
// few hundred ms after the first: closeOnSignals takes a signal within 1 s of the first as the
// same request, so the flush goes on; only a signal after that ends the process at once. Before,
// the forwarded one cut the flush short and the records in flight were lost. A child process
// (test/helpers/signal-child.ts, closeOnSignals(client)) reports in a loop and gets the signals.
const root = new URL("../../../..", import.meta.url).pathname;
let slow: AedesBroker;
let proxy: LatencyProxy;
let deaf: AedesBroker;
const children: ChildProcess[] = [];
beforeAll(async () => {
  slow = await AedesBroker.create();
  proxy = await LatencyProxy.start(slow.port, 300); // every PUBACK ≥ 600 ms away
  deaf = await AedesBroker.create({ ignorePublish: (topic) => topic === "billing/report" });
});
afterAll(async () => {
  for (const c of children) c.kill("SIGKILL");
  await proxy.stop();
  await slow.close();
  await deaf.close();
});

async function reportingChild(port: number) {
  const child = spawn("node", ["--import", "tsx", join(root, "test/helpers/signal-child.ts")], {
    cwd: root,
    env: { ...process.env, BILLING_CHILD: JSON.stringify({ port, mode: "on", timeoutMs: 20_000 }) },
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
  let gone = false;
  const exited = (once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>).then(
    (r) => {
      gone = true;
      return r;
    },
  );
  await waitUntil(() => stdout.includes("ready"), 30_000, "the child reporting");
  return {
    child,
    exited,
    gone: () => gone,
    stderr: () => stderr,
    resolved: () => stdout.split("\n").filter((l) => /^[0-9a-f-]{36}$/.test(l)),
  };
}

describe("a second signal soon after the first", () => {
  it("within 1 s it does not cut the flush: every record whose reportUsage resolved arrives", async () => {
    const c = await reportingChild(proxy.port);
    c.child.kill("SIGTERM");
    await sleep(150); // as a wrapper forwards it
    expect(c.gone()).toBe(false); // the flush takes ≥ 600 ms: it is still going on
    c.child.kill("SIGTERM");
    const [code, signal] = await c.exited;
    expect([code, signal]).toEqual([null, "SIGTERM"]);
    await sleep(700); // what the proxy still holds reaches the broker
    const arrived = new Set(decodeRecords(slow.payloads("billing/report")).map((r) => r.id));
    const resolved = c.resolved();
    expect(resolved.length).toBeGreaterThanOrEqual(200);
    expect(resolved.filter((id) => !arrived.has(id))).toEqual([]);
    expect(c.stderr()).toContain(
      "SIGTERM again within 1000 ms: taken as the same request (wrappers such as npm or tsx forward it); send it again later to leave without waiting",
    );
    expect(c.stderr()).toContain("every accepted record was acknowledged");
  }, 60_000);

  it("after 1 s a signal ends the process at once, while the client still waits for PUBACKs", async () => {
    const c = await reportingChild(deaf.port); // never acknowledges a record: close waits 20 s
    const t0 = Date.now();
    c.child.kill("SIGTERM");
    await sleep(200);
    c.child.kill("SIGTERM");
    await sleep(900);
    expect(c.gone()).toBe(false); // the second was the same request: still closing
    await sleep(Math.max(0, t0 + 2000 - Date.now())); // well past 1 s, even if the first was handled late
    c.child.kill("SIGTERM");
    const [, signal] = await c.exited;
    expect(signal).toBe("SIGTERM");
    expect(Date.now() - t0).toBeLessThan(5000); // not the 20 s of its close timeout
    expect(c.stderr()).toContain("SIGTERM again: leaving without waiting for the billing client");
  }, 60_000);
});
