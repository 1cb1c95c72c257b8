import { once } from "node:events";
import { createServer } from "node:http";
import { createServer as createHttp2Server } from "node:http2";
import { ConnectError, type ConnectRouter, createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createConnectTransport } from "@connectrpc/connect-node";
import { describe, expect, it } from "vitest";
import {
  BillingClient,
  closeOnSignals,
  reportUsageFor,
  requireApiKey,
} from "../../../../src/index.js";
import { EchoService } from "../../../gen/test/v1/echo_pb.js";
import { useEmbeddedBroker } from "../../../helpers/embedded-broker.js";
import { waitUntil } from "../../../helpers/time.js";

// closeOnSignals' `drain`, in this process (SIGUSR2 with exit: "none" and a listener of the
// test's own, so the process lives on): an HTTP/1.1 server with keep-alive connections, and
// functions that finish, hang or fail. The HTTP/2 server under load in a child process is in
// calls-in-flight-at-sigterm.test.ts.
const b = useEmbeddedBroker();

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

describe("closeOnSignals({ drain })", () => {
  it("drains an HTTP/1.1 server: calls in flight finish and report, idle keep-alive connections do not hold it", async () => {
    const client = new BillingClient(b.options());
    await client.connect();
    let started = 0;
    const routes = (router: ConnectRouter) =>
      router.service(EchoService, {
        async say(_req, ctx) {
          started++;
          await new Promise((r) => setTimeout(r, 300));
          return { text: await reportUsageFor(ctx, { module: "llm", model: "m", usage: 1 }) };
        },
      });
    const server = createServer(
      connectNodeAdapter({
        routes,
        interceptors: [requireApiKey({ verify: async () => ({ appId: "app-1" }) })],
      }),
    );
    server.listen(0, "127.0.0.1");
    const lines: Array<[string, number]> = [];
    closeOnSignals(client, {
      signals: ["SIGUSR2"],
      exit: "none",
      drain: server,
      logger: (_level, message) => void lines.push([message, Date.now()]),
    });
    await once(server, "listening");
    const port = (server.address() as { port: number }).port;
    const echo = createClient(
      EchoService,
      createConnectTransport({ baseUrl: `http://127.0.0.1:${port}`, httpVersion: "1.1" }),
    );
    // Warm keep-alive connections first (idle ones must not hold the drain for 5 s).
    await Promise.all(
      Array.from({ length: 5 }, () => echo.say({ text: "w" }, { headers: { "api-key": "k" } })),
    );
    const calls = Array.from({ length: 20 }, () =>
      echo.say({ text: "x" }, { headers: { "api-key": "k" } }),
    );
    await waitUntil(() => started === 25, 5000, "20 calls in flight");
    await withSignal(async (signal) => {
      const at = Date.now();
      signal();
      const replies = await Promise.all(calls);
      await waitUntil(
        () => lines.some(([m]) => m.startsWith("billing client closed")),
        10_000,
        "closed",
      );
      const drained = lines.find(([m]) => m === "drained: closing the billing client");
      expect(drained?.[1]).toBeDefined();
      expect((drained?.[1] as number) - at).toBeLessThan(2000); // not the 5 s keep-alive timeout
      expect(server.listening).toBe(false);
      expect(lines.map(([m]) => m)).toEqual([
        "SIGUSR2: draining the server (the calls in flight finish), then closing the billing client",
        "drained: closing the billing client",
        "billing client closed: every accepted record was acknowledged",
      ]);
      const arrived = new Set(b.received().map((r) => r.id));
      expect(replies.filter((r) => !arrived.has(r.text))).toEqual([]);
      expect(arrived.size).toBe(25);
    });
  });

  it("awaits a drain function before closing; one that hangs is cut at drainTimeoutMs, one that fails is logged", async () => {
    for (const [name, drain, expected] of [
      [
        "finishes",
        async (client: BillingClient) => {
          await new Promise((r) => setTimeout(r, 100));
          await client.reportUsage({ apiKey: "k", module: "llm", model: "m", usage: 7 });
        },
        undefined,
      ],
      ["hangs", () => new Promise<void>(() => {}), "drain did not finish within 300 ms"],
      [
        "fails",
        async () => {
          throw new Error("boom");
        },
        "drain failed: boom",
      ],
    ] as const) {
      const client = new BillingClient(b.options());
      await client.connect();
      const lines: string[] = [];
      closeOnSignals(client, {
        signals: ["SIGUSR2"],
        exit: "none",
        drain: () => drain(client),
        drainTimeoutMs: 300,
        logger: (_level, message) => void lines.push(message),
      });
      await withSignal(async (signal) => {
        const at = Date.now();
        signal();
        await waitUntil(() => lines.some((m) => m.startsWith("billing client closed")), 5000, name);
        expect(Date.now() - at, name).toBeLessThan(2000);
        expect(lines.at(-2), name).toBe(
          expected === undefined
            ? "drained: closing the billing client"
            : `${expected}: closing the billing client anyway`,
        );
        expect(lines.at(-1), name).toBe(
          "billing client closed: every accepted record was acknowledged",
        );
      });
    }
    // What the finishing drain reported went out before the client closed.
    expect(b.received().map((r) => r.usage)).toEqual([7n]);
  });

  it("cuts an HTTP/2 server's connections that are still open at drainTimeoutMs, then closes", async () => {
    const client = new BillingClient(b.options());
    await client.connect();
    const routes = (router: ConnectRouter) =>
      router.service(EchoService, { say: () => new Promise(() => {}) }); // never answers
    const server = createHttp2Server(connectNodeAdapter({ routes }));
    server.listen(0, "127.0.0.1");
    const lines: string[] = [];
    closeOnSignals(client, {
      signals: ["SIGUSR2"],
      exit: "none",
      drain: server,
      drainTimeoutMs: 300,
      logger: (_level, message) => void lines.push(message),
    });
    await once(server, "listening");
    const port = (server.address() as { port: number }).port;
    const echo = createClient(
      EchoService,
      createConnectTransport({ baseUrl: `http://127.0.0.1:${port}`, httpVersion: "2" }),
    );
    const stuck = echo.say({ text: "x" }).catch((e: unknown) => ConnectError.from(e).code);
    await new Promise((r) => setTimeout(r, 200));
    await withSignal(async (signal) => {
      signal();
      await waitUntil(
        () => lines.some((m) => m.startsWith("billing client closed")),
        5000,
        "closed",
      );
    });
    expect(lines.slice(1)).toEqual([
      "the server did not drain within 300 ms: 1 connection cut: closing the billing client anyway",
      "billing client closed: every accepted record was acknowledged",
    ]);
    expect(typeof (await stuck)).toBe("number"); // the cut call failed, it did not hang
    expect(server.listening).toBe(false);
  });

  it("refuses a drain that is neither a server nor a function, and a bad drainTimeoutMs", async () => {
    const client = new BillingClient(b.options());
    // Removed before a signal, it lets go of the server it watched.
    for (const server of [createHttp2Server(), createServer()]) {
      const events = ["session", "stream", "connection", "request"] as const;
      const counts = () => events.map((e) => server.listenerCount(e));
      const before = counts();
      const uninstall = closeOnSignals(client, { drain: server });
      expect(counts()).not.toEqual(before);
      uninstall();
      expect(counts()).toEqual(before);
    }
    for (const drain of [42, {}, "server"]) {
      expect(() => closeOnSignals(client, { drain: drain as never })).toThrow(
        expect.objectContaining({ code: "INVALID_ARGUMENT", field: "drain" }),
      );
    }
    for (const drainTimeoutMs of [-1, Number.NaN, 1.5, 2 ** 31]) {
      expect(() => closeOnSignals(client, { drainTimeoutMs })).toThrow(
        expect.objectContaining({ code: "INVALID_ARGUMENT", field: "drainTimeoutMs" }),
      );
    }
  });
});
