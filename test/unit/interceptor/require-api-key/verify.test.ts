import { once } from "node:events";
import { createServer } from "node:http";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import {
  connectNodeAdapter,
  createConnectTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { describe, expect, it } from "vitest";
import { KeyState } from "../../../../gen/billing/v1/usage_pb.js";
import {
  type RequireApiKeyOptions,
  requireApiKey,
  type VerifiedKey,
} from "../../../../src/index.js";
import { EchoService } from "../../../gen/test/v1/echo_pb.js";
import { echoRoutes } from "../../../helpers/echo-server.js";
import { sleep } from "../../../helpers/time.js";

// The `verify` option: keys checked by the service's own function, cached, single-flight.
function setup(
  verify: (key: string) => Promise<VerifiedKey | null>,
  extra: RequireApiKeyOptions = {},
) {
  const transport = createRouterTransport(echoRoutes, {
    router: { interceptors: [requireApiKey({ verify, ...extra })] },
  });
  const client = createClient(EchoService, transport);
  return (key: string) =>
    client.say({ text: "x" }, { headers: { "api-key": key } }).then(
      (r) => r.appId,
      (e: unknown) => ConnectError.from(e).code,
    );
}

describe("requireApiKey({ verify })", () => {
  it("caches hits for ttlMs and misses for negativeTtlMs", async () => {
    const calls: string[] = [];
    const call = setup(
      async (key) => {
        calls.push(key);
        return key === "good" ? { appId: "app-1" } : null;
      },
      { cache: { ttlMs: 200, negativeTtlMs: 50 } },
    );
    expect(await call("good")).toBe("app-1");
    expect(await call("good")).toBe("app-1");
    expect(await call("bad")).toBe(Code.Unauthenticated);
    expect(await call("bad")).toBe(Code.Unauthenticated);
    expect(calls).toEqual(["good", "bad"]);
    await sleep(80); // the miss expired, the hit did not
    await call("bad");
    await call("good");
    expect(calls).toEqual(["good", "bad", "bad"]);
    await sleep(200);
    await call("good");
    expect(calls).toEqual(["good", "bad", "bad", "good"]);
  });

  it("makes one lookup for N concurrent calls with the same key (single flight)", async () => {
    let calls = 0;
    const call = setup(async () => {
      calls++;
      await sleep(50);
      return { appId: "app-sf" };
    });
    const results = await Promise.all(Array.from({ length: 20 }, () => call("k")));
    expect(results).toEqual(Array(20).fill("app-sf"));
    expect(calls).toBe(1);
  });

  it("fails closed (Unavailable) when the verifier throws or is too slow, caching nothing", async () => {
    let mode: "throw" | "slow" | "ok" = "throw";
    const call = setup(
      async () => {
        if (mode === "throw") throw new Error("db down");
        if (mode === "slow") await sleep(300);
        return { appId: "app-ok" };
      },
      { verifyTimeoutMs: 50 },
    );
    expect(await call("k")).toBe(Code.Unavailable);
    mode = "slow";
    expect(await call("k")).toBe(Code.Unavailable);
    mode = "ok";
    expect(await call("k")).toBe("app-ok");
  });

  it("blocked answers give PermissionDenied; maxEntries bounds the cache", async () => {
    const calls: string[] = [];
    const call = setup(
      async (key) => {
        calls.push(key);
        return key.startsWith("blocked")
          ? { appId: "a", state: KeyState.BLOCKED, reason: "quota" }
          : { appId: key };
      },
      { cache: { maxEntries: 2 } },
    );
    expect(await call("blocked-1")).toBe(Code.PermissionDenied);
    await call("a");
    await call("b"); // evicts blocked-1 (the oldest)
    await call("a");
    await call("blocked-1");
    expect(calls).toEqual(["blocked-1", "a", "b", "blocked-1"]);
  });

  it("custom header names, bearer off, exempt predicate", async () => {
    const call = (headers: Record<string, string>, method: "say" | "health" = "say") => {
      const transport = createRouterTransport(echoRoutes, {
        router: {
          interceptors: [
            requireApiKey({
              verify: async () => ({ appId: "x" }),
              headers: ["x-billing-key"],
              bearer: false,
              exempt: (m) => m.endsWith("/Health"),
            }),
          ],
        },
      });
      return createClient(EchoService, transport)
        [method]({ text: "t" }, { headers })
        .then(
          () => "ok",
          (e: unknown) => ConnectError.from(e).code,
        );
    };
    expect(await call({ "x-billing-key": "k" })).toBe("ok");
    expect(await call({ "api-key": "k" })).toBe(Code.Unauthenticated);
    expect(await call({ authorization: "Bearer k" })).toBe(Code.Unauthenticated);
    expect(await call({}, "health")).toBe("ok");
  });
});

describe("over HTTP/1.1 (Connect and gRPC-web)", () => {
  it("refuses and admits the same way", async () => {
    const server = createServer(
      connectNodeAdapter({
        routes: echoRoutes,
        interceptors: [
          requireApiKey({ verify: async (k) => (k === "good" ? { appId: "h1" } : null) }),
        ],
      }),
    );
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const baseUrl = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    try {
      for (const transport of [
        createConnectTransport({ baseUrl, httpVersion: "1.1" }),
        createGrpcWebTransport({ baseUrl, httpVersion: "1.1" }),
      ]) {
        const c = createClient(EchoService, transport);
        expect((await c.say({ text: "x" }, { headers: { "api-key": "good" } })).appId).toBe("h1");
        const err = await c
          .say({ text: "x" }, { headers: { "api-key": "bad" } })
          .catch((e: unknown) => ConnectError.from(e));
        expect(err).toMatchObject({ code: Code.Unauthenticated, rawMessage: "invalid API key" });
      }
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});

describe("reportUsageFor", () => {
  it("refuses a context without a verified caller, or without a client", async () => {
    const { createContextValues } = await import("@connectrpc/connect");
    const { reportUsageFor, billingCaller, BillingClient } = await import(
      "../../../../src/index.js"
    );
    const values = createContextValues();
    await expect(
      reportUsageFor({ values }, { module: "llm", model: "m", usage: 1 }),
    ).rejects.toMatchObject({ code: "INVALID_ARGUMENT", field: "ctx" });
    values.set(billingCaller, { apiKeySha256: "a".repeat(64), appId: "x", state: KeyState.ACTIVE });
    await expect(
      reportUsageFor({ values }, { module: "llm", model: "m", usage: 1 }, undefined),
    ).rejects.toMatchObject({ code: "NOT_INITIALIZED" });
    const client = new BillingClient({ brokerPort: 9, tls: false, logger: () => {} });
    try {
      await expect(
        reportUsageFor({ values }, { module: "llm", model: "m", usage: 1.5 }, client),
      ).rejects.toMatchObject({ code: "INVALID_ARGUMENT", field: "usage" });
      await expect(reportUsageFor({ values }, null as never, client)).rejects.toMatchObject({
        code: "INVALID_ARGUMENT",
      });
      const id = await reportUsageFor({ values }, { module: "llm", model: "m", usage: 3n }, client);
      expect(id).toMatch(/^[0-9a-f-]{36}$/);
      expect(client.stats().queued).toBe(1);
    } finally {
      await client.close(0).catch(() => {});
    }
  });
});
