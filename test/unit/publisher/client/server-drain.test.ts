import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { Agent, createServer, request } from "node:http";
import { connect as connectHttp2, createServer as createHttp2Server } from "node:http2";
import { ConnectError, type ConnectRouter, createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createConnectTransport } from "@connectrpc/connect-node";
import { afterEach, describe, expect, it } from "vitest";
import { BillingClient, closeOnSignals } from "../../../../src/index.js";
import { serverDrain } from "../../../../src/publisher/client/server-drain.js";
import { EchoService } from "../../../gen/test/v1/echo_pb.js";
import { useEmbeddedBroker } from "../../../helpers/embedded-broker.js";
import { sleep, waitUntil } from "../../../helpers/time.js";

// Draining a server in this process: HTTP/1.1 responses tell the client to take its next call
// elsewhere; an HTTP/2 server passed to closeOnSignals after listen() (SIGUSR2 with exit: "none"
// and a listener of the test's own, so the process lives on): said at once, a busy session still
// gets its GOAWAY, and the deadline's count of what it cut is honest. HTTP/1.1 under a steady
// load, SIGTERM to a child process: calls-in-flight-at-sigterm.test.ts.
const b = useEmbeddedBroker();
const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

/** What closeOnSignals says of an HTTP/2 server passed after listen(). */
const LATE =
  "drain: the server is already listening: HTTP/2 sessions opened before closeOnSignals() was called are seen only when they start a call (until then they get no GOAWAY, and one that stays idle holds the drain until drainTimeoutMs). Pass the server in the tick that calls listen(), or before.";

/** Sends SIGUSR2 to this process with the test's own listener installed; removes it after. */
async function withSignal(run: (signal: () => void) => Promise<void>) {
  const own = () => {};
  process.on("SIGUSR2", own);
  try {
    await run(() => process.kill(process.pid, "SIGUSR2"));
  } finally {
    process.off("SIGUSR2", own);
  }
}

/** A Connect echo service whose handler waits `handlerMs` and answers with a fresh id. */
function service(handlerMs: number) {
  const started: Array<{ id: string; at: number }> = [];
  const routes = (router: ConnectRouter) =>
    router.service(EchoService, {
      async say() {
        const id = randomUUID();
        started.push({ id, at: performance.now() });
        await sleep(handlerMs);
        return { text: id };
      },
    });
  return { started, handler: connectNodeAdapter({ routes }) };
}

/** `n` callers calling in a loop until stopped; what they were answered, and how calls failed. */
function callers(n: number, baseUrl: string, httpVersion: "1.1" | "2") {
  const echo = createClient(EchoService, createConnectTransport({ baseUrl, httpVersion }));
  const answered = new Set<string>();
  const failed: string[] = [];
  let stop = false;
  const loops = Array.from({ length: n }, async () => {
    while (!stop) {
      try {
        answered.add((await echo.say({ text: "x" })).text);
      } catch (e) {
        failed.push(ConnectError.from(e).rawMessage);
        await sleep(20);
      }
    }
  });
  return {
    answered,
    failed,
    stop: async () => {
      stop = true;
      await Promise.all(loops);
    },
  };
}

/** closeOnSignals with `drain: server`, its log lines with the time each was said. */
async function drainOnSignal(server: ReturnType<typeof createHttp2Server>, ms: number) {
  const client = new BillingClient(b.options());
  await client.connect();
  const lines: Array<{ level: string; message: string; at: number }> = [];
  const uninstall = closeOnSignals(client, {
    signals: ["SIGUSR2"],
    exit: "none",
    drain: server,
    drainTimeoutMs: ms,
    logger: (level, message) => void lines.push({ level, message, at: performance.now() }),
  });
  cleanup.push(uninstall);
  const closed = () => lines.some((l) => l.message.startsWith("billing client closed"));
  return { lines, closed };
}

describe("closeOnSignals({ drain: server }) under load", () => {
  it("HTTP/1.1: the response in flight says Connection: close, and so does that of a call that arrives on a kept-alive connection once the drain began", async () => {
    const server = createServer((_req, res) => void setTimeout(() => res.end("x"), 100));
    const listening = once(server, "listening");
    server.listen(0, "127.0.0.1");
    await listening;
    cleanup.push(() => server.closeAllConnections());
    const { drain } = serverDrain(server, 5000);
    const agent = new Agent({ keepAlive: true, maxSockets: 2 });
    cleanup.push(() => agent.destroy());
    const port = (server.address() as { port: number }).port;
    // What the response said of its connection, or how the call failed.
    const get = () =>
      new Promise<string>((resolve) => {
        request({ host: "127.0.0.1", port, agent }, (res) => {
          res.resume();
          res.on("end", () => resolve(`connection: ${res.headers.connection}`));
        })
          .on("error", (e: NodeJS.ErrnoException) => resolve(`error ${e.code}`))
          .end();
      });
    expect(await Promise.all([get(), get()])).toEqual([
      "connection: keep-alive",
      "connection: keep-alive",
    ]); // two connections kept alive
    const inFlight = get();
    await sleep(30);
    const at = performance.now();
    const drained = drain();
    const late = get(); // on the other connection, idle when the drain began
    expect([await inFlight, await late]).toEqual(["connection: close", "connection: close"]);
    expect(await drained).toBeUndefined();
    expect(performance.now() - at).toBeLessThan(1000);
    expect(server.listening).toBe(false);
  });

  it("HTTP/2 passed after listen(), one session busy: said at once; it gets its GOAWAY when it next calls, and the drain ends", async () => {
    const { started, handler } = service(20);
    const server = createHttp2Server(handler);
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const port = (server.address() as { port: number }).port;
    const load = callers(10, `http://127.0.0.1:${port}`, "2");
    cleanup.push(load.stop);
    await waitUntil(() => load.answered.size >= 100, 10_000, "100 calls answered");
    const { lines, closed } = await drainOnSignal(server, 3000);
    await withSignal(async (signal) => {
      const at = performance.now();
      signal();
      await waitUntil(closed, 10_000, "the client closed");
      await load.stop();
      // Its calls take 20 ms: with its GOAWAY, the drain ends in a fraction of drainTimeoutMs.
      const end = lines.find((l) => /^(drained|the server did not drain)/.test(l.message));
      expect((end?.at as number) - at).toBeLessThan(1000);
      expect(started.filter((s) => s.at > (end?.at as number))).toEqual([]);
      expect(started.filter((s) => !load.answered.has(s.id))).toEqual([]);
    });
    expect(lines.map((l) => [l.level, l.message])).toEqual([
      ["warn", LATE],
      [
        "info",
        "SIGUSR2: draining the server (the calls in flight finish), then closing the billing client",
      ],
      ["info", "drained: closing the billing client"],
      ["info", "billing client closed: every accepted record was acknowledged"],
    ]);
  });

  it("HTTP/2 passed after listen(), one session idle: at the deadline, the log says it could not reach it", async () => {
    const { handler } = service(0);
    const server = createHttp2Server(handler);
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const session = connectHttp2(`http://127.0.0.1:${(server.address() as { port: number }).port}`);
    cleanup.push(() => session.destroy());
    await once(session, "connect");
    const { lines, closed } = await drainOnSignal(server, 300);
    await withSignal(async (signal) => {
      signal();
      await waitUntil(closed, 5000, "the client closed");
    });
    expect(lines.map((l) => l.message)).toEqual([
      LATE,
      "SIGUSR2: draining the server (the calls in flight finish), then closing the billing client",
      "the server did not drain within 300 ms: 0 connections cut, 1 left open (opened before closeOnSignals() was called, it cannot be reached: it ends with the process): closing the billing client anyway",
      "billing client closed: every accepted record was acknowledged",
    ]);
    expect(session.closed).toBe(false);
  });
});
