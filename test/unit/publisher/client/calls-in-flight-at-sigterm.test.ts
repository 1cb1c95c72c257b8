import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EchoService } from "../../../gen/test/v1/echo_pb.js";
import { AedesBroker } from "../../../helpers/aedes-broker.js";
import { decodeRecords } from "../../../helpers/fixtures.js";
import { waitUntil } from "../../../helpers/time.js";

// SIGTERM to a Connect service (the README's quick start, in a child process) while calls are
// in flight: with closeOnSignals(billing, { drain: server }) the server stops taking calls, the
// ones in flight finish and report their usage, and only then the billing client flushes and
// closes. Without drain, the client closed at once and the process died under the calls
// (ECONNRESET), their usage never reported.
const root = new URL("../../../..", import.meta.url).pathname;
let broker: AedesBroker;
const children: ChildProcess[] = [];
beforeAll(async () => {
  broker = await AedesBroker.create();
});
afterAll(async () => {
  for (const c of children) c.kill("SIGKILL");
  await broker.close();
});

async function startService(
  drain: boolean,
  handlerMs: number,
  more: { http1?: boolean; drainTimeoutMs?: number } = {},
) {
  const cfg = { port: broker.port, drain, handlerMs, ...more };
  const child = spawn("node", ["--import", "tsx", join(root, "test/helpers/server-child.ts")], {
    cwd: root,
    env: { ...process.env, BILLING_CHILD: JSON.stringify(cfg) },
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
  await waitUntil(() => /listening \d+/.test(stdout), 30_000, "the service listening");
  const port = Number(/listening (\d+)/.exec(stdout)?.[1]);
  const echo = createClient(
    EchoService,
    createConnectTransport({
      baseUrl: `http://127.0.0.1:${port}`,
      httpVersion: more.http1 === true ? "1.1" : "2",
    }),
  );
  return {
    child,
    exited,
    started: () => stdout.split("\n").filter((l) => l === "started").length,
    /** The handlers started after the log line that starts with `line`. */
    startedAfter: (line: string) => {
      const lines = stdout.split("\n");
      const at = lines.findIndex((l) => l.startsWith(`log ${line}`));
      return at === -1 ? 0 : lines.slice(at).filter((l) => l === "started").length;
    },
    logged: () => stdout.split("\n").flatMap((l) => (l.startsWith("log ") ? [l.slice(4)] : [])),
    stderr: () => stderr,
    call: (i: number) => echo.say({ text: `call-${i}` }, { headers: { "api-key": "k" } }),
  };
}

/** What became of each call: its record id, or how it failed. */
type Outcome = { ok: true; id: string } | { ok: false; error: string };
const outcome = (p: Promise<{ text: string }>): Promise<Outcome> =>
  p.then(
    (r) => ({ ok: true, id: r.text }),
    (e: unknown) => {
      const err = ConnectError.from(e);
      const cause = (err.cause as { code?: string } | undefined)?.code ?? "";
      return { ok: false, error: `${err.code} ${err.rawMessage} ${cause}` };
    },
  );
const arrived = () => new Set(decodeRecords(broker.payloads("billing/report")).map((r) => r.id));

describe("SIGTERM with calls in flight", () => {
  it("with drain: 100 calls in flight all complete, none reset, and every record is flushed", async () => {
    broker.published.splice(0);
    const svc = await startService(true, 500);
    const calls = Array.from({ length: 100 }, (_, i) => outcome(svc.call(i)));
    await waitUntil(() => svc.started() === 100, 20_000, "100 calls in their handlers");
    svc.child.kill("SIGTERM");
    const results = await Promise.all(calls);
    const [code, signal] = await svc.exited;
    expect(results.filter((r) => !r.ok)).toEqual([]);
    const ids = results.map((r) => (r.ok ? r.id : ""));
    const got = arrived();
    expect(ids.filter((id) => !got.has(id))).toEqual([]);
    expect(new Set(ids).size).toBe(100);
    expect([code, signal]).toEqual([null, "SIGTERM"]);
    expect(svc.stderr()).toContain("SIGTERM: draining the server");
    expect(svc.stderr()).toContain("every accepted record was acknowledged");
  }, 60_000);

  it("with drain under a steady load: every call that reached a handler completes, none is reset", async () => {
    broker.published.splice(0);
    const svc = await startService(true, 50);
    let stop = false;
    const results: Outcome[] = [];
    // 20 callers, each calling again as soon as its call ends, until the service is gone.
    const callers = Array.from({ length: 20 }, async (_, c) => {
      for (let i = 0; !stop; i++) {
        const r = await outcome(svc.call(c * 1_000_000 + i));
        results.push(r);
        if (!r.ok) return;
      }
    });
    await waitUntil(() => svc.started() >= 400, 30_000, "a steady load");
    svc.child.kill("SIGTERM");
    const [, signal] = await svc.exited;
    stop = true;
    await Promise.all(callers);
    expect(signal).toBe("SIGTERM");
    const ok = results.filter((r) => r.ok);
    const failed = results.filter((r): r is { ok: false; error: string } => !r.ok);
    // Each call a handler started completed; those refused after the GOAWAY never started one.
    expect(ok.length).toBe(svc.started());
    // Cut calls show as ECONNRESET (HTTP/1.1) or a stream CANCEL (HTTP/2): none.
    expect(failed.filter((r) => /ECONNRESET|reset|CANCEL/i.test(r.error))).toEqual([]);
    const got = arrived();
    expect(ok.filter((r) => r.ok && !got.has(r.id))).toEqual([]);
  }, 60_000);

  it("with drain under a steady load of HTTP/1.1 keep-alive callers: the drain ends once the calls in flight are answered; none is cut, none starts after", async () => {
    broker.published.splice(0);
    const svc = await startService(true, 50, { http1: true, drainTimeoutMs: 5000 });
    let stop = false;
    const results: Outcome[] = [];
    // 20 callers on kept-alive connections (Node's global agent), each calling again as soon
    // as its call ends, until the service is gone.
    const callers = Array.from({ length: 20 }, async (_, c) => {
      for (let i = 0; !stop; i++) {
        const r = await outcome(svc.call(c * 1_000_000 + i));
        results.push(r);
        if (!r.ok) return;
      }
    });
    await waitUntil(() => svc.started() >= 400, 30_000, "a steady load");
    const at = Date.now();
    svc.child.kill("SIGTERM");
    const [, signal] = await svc.exited;
    const took = Date.now() - at;
    stop = true;
    await Promise.all(callers);
    expect(signal).toBe("SIGTERM");
    expect(svc.logged().slice(0, 2)).toEqual([
      "SIGTERM: draining the server (the calls in flight finish), then closing the billing client",
      "drained: closing the billing client",
    ]);
    // The calls in flight take 50 ms: the drain ends in a fraction of drainTimeoutMs (5 s).
    expect(took).toBeLessThan(2000);
    // A kept-alive connection brings at most the call already on its way (answered with
    // `Connection: close`), not a stream of new ones; and none after the drain.
    expect(svc.startedAfter("SIGTERM: draining")).toBeLessThanOrEqual(20);
    expect(svc.startedAfter("drained")).toBe(0);
    // Each call a handler started completed, and its record arrived; none was reset (the
    // connections idle when the drain began are closed only once they stayed idle a while).
    const ok = results.filter((r) => r.ok);
    expect(ok.length).toBe(svc.started());
    const failed = results.filter((r): r is { ok: false; error: string } => !r.ok);
    expect(failed.filter((r) => /ECONNRESET|EPIPE|hang up/i.test(r.error))).toEqual([]);
    const got = arrived();
    expect(ok.filter((r) => r.ok && !got.has(r.id))).toEqual([]);
  }, 60_000);

  it("without drain (closeOnSignals(billing) alone): the calls in flight are cut", async () => {
    broker.published.splice(0);
    const svc = await startService(false, 500);
    const calls = Array.from({ length: 100 }, (_, i) => outcome(svc.call(i)));
    await waitUntil(() => svc.started() === 100, 20_000, "100 calls in their handlers");
    svc.child.kill("SIGTERM");
    const results = await Promise.all(calls);
    await svc.exited;
    // Each was cut: "http/2 stream closed with error code CANCEL" (ECONNRESET over HTTP/1.1).
    expect(results.filter((r) => r.ok)).toEqual([]);
    expect(arrived().size).toBe(0);
  }, 60_000);
});
