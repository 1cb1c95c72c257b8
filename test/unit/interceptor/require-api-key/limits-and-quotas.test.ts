import { Code, type ConnectError, type Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type BillingClient, hashApiKey } from "../../../../src/index.js";
import { type KeyRules, quotasLeft } from "../../../../src/keys/key-rules.js";
import { handlerRuns } from "../../../helpers/echo-server.js";
import type { KeyEntry } from "../../../helpers/fixtures.js";
import { active, decisions, errorOf, say, startRulesWorld } from "../../../helpers/rules-world.js";
import { sleep } from "../../../helpers/time.js";

// Issue 14 over real calls: rate-limit window edges and concurrency, quotas debited by reported
// usage and reset by updates, expiry passing while the process runs, and a grpc-js client.
let world: Awaited<ReturnType<typeof startRulesWorld>>;
let billing: BillingClient;
let server: { url: string; port: number };
const pushKeys = (snapshot: boolean, keys: KeyEntry[]) => world.pushKeys(snapshot, keys);
beforeAll(async () => {
  world = await startRulesWorld();
  ({ billing, server } = world);
  await pushKeys(true, [active("loaded")]); // the list loads with a snapshot; deltas follow
});
afterAll(() => world.close());
beforeEach(() => {
  decisions.length = 0;
});

const transports: Array<[string, () => Transport]> = [
  ["Connect", () => createConnectTransport({ baseUrl: server.url, httpVersion: "2" })],
  ["gRPC", () => createGrpcTransport({ baseUrl: server.url })],
  ["gRPC-web", () => createGrpcWebTransport({ baseUrl: server.url, httpVersion: "2" })],
];

describe("rate limits: window edges and concurrency", () => {
  const connect = () => createConnectTransport({ baseUrl: server.url, httpVersion: "2" });

  it("5 per 2 s: the 5th call in, the 6th refused; after the window, calls in again", async () => {
    await pushKeys(false, [active("five", { rateLimits: [{ limit: 5, windowSeconds: 2 }] })]);
    const t = connect();
    const burst = async () => {
      // Five at once, then the sixth: all within far less than 2 s / 5 = 400 ms of refill.
      const five = await Promise.all([1, 2, 3, 4, 5].map(() => errorOf(say(t, "five"))));
      const sixth = await errorOf(say(t, "five"));
      return { five, sixth };
    };
    const first = await burst();
    expect(first.five).toEqual(["ok", "ok", "ok", "ok", "ok"]);
    expect(first.sixth).toMatchObject({ code: Code.ResourceExhausted });
    expect((first.sixth as ConnectError).metadata.get("retry-after")).toBe("1");
    await sleep(2100);
    const second = await burst();
    expect(second.five).toEqual(["ok", "ok", "ok", "ok", "ok"]);
    expect(second.sixth).toMatchObject({ code: Code.ResourceExhausted });
  });

  it.each(transports)(
    "64 parallel calls against 10 per window let exactly 10 in (%s)",
    async (name, make) => {
      const key = `ten-${name}`;
      await pushKeys(false, [active(key, { rateLimits: [{ limit: 10, windowSeconds: 600 }] })]);
      const runs = handlerRuns.count;
      const t = make();
      const results = await Promise.all(Array.from({ length: 64 }, () => errorOf(say(t, key))));
      const ok = results.filter((r) => r === "ok").length;
      expect(ok).toBe(10);
      expect(results.filter((r) => r !== "ok" && r.code === Code.ResourceExhausted).length).toBe(
        54,
      );
      expect(handlerRuns.count - runs).toBe(10);
    },
  );

  it("a snapshot that keeps a key's limits keeps its bucket (a re-sent list does not refill it)", async () => {
    const entry = active("kept", { rateLimits: [{ limit: 1, windowSeconds: 600 }] });
    await pushKeys(true, [entry]);
    const t = connect();
    expect(await errorOf(say(t, "kept"))).toBe("ok");
    await pushKeys(true, [entry]);
    expect(await errorOf(say(t, "kept"))).toMatchObject({ code: Code.ResourceExhausted });
    await pushKeys(true, [active("kept", { rateLimits: [{ limit: 2, windowSeconds: 600 }] })]);
    expect(await errorOf(say(t, "kept"))).toBe("ok"); // new limits: a new bucket
  });

  it("a usage limit (module set) is debited by reportUsageFor and refuses while in debt", async () => {
    await pushKeys(false, [
      active("tokens", { rateLimits: [{ limit: 10, windowSeconds: 60, module: "llm" }] }),
    ]);
    const t = connect();
    // 15 units reported against 10 per minute: 5 in debt, 30 s of refill to wait.
    expect(await errorOf(say(t, "tokens", "x".repeat(15)))).toBe("ok");
    const e = await errorOf(say(t, "tokens"));
    expect(e).toMatchObject({ code: Code.ResourceExhausted });
    const seconds = Number((e as ConnectError).metadata.get("retry-after"));
    expect(seconds).toBeGreaterThanOrEqual(28);
    expect(seconds).toBeLessThanOrEqual(30);
    // Usage of another module does not touch it.
    await billing.reportUsage({ apiKey: "tokens", module: "tts", model: "m", usage: 1 });
    expect(billing.keys.rulesOf(hashApiKey("tokens"))?.buckets?.[0]).toBeLessThan(-4);
  });
});

describe("quotas", () => {
  const grpcT = () => createGrpcTransport({ baseUrl: server.url });

  it("reportUsageFor debits the quota; at or below 0 calls are refused; a new update resets it", async () => {
    await pushKeys(false, [active("prepaid", { quotas: [{ module: "llm", remaining: 12 }] })]);
    const left = () => quotasLeft(billing.keys.rulesOf(hashApiKey("prepaid")) as KeyRules);
    const t = grpcT();
    expect(await errorOf(say(t, "prepaid", "hello"))).toBe("ok");
    expect(left()).toEqual([7]);
    expect(await errorOf(say(t, "prepaid", "hello"))).toBe("ok");
    expect(await errorOf(say(t, "prepaid", "hello"))).toBe("ok"); // 2 left: let in, goes to -3
    expect(left()).toEqual([-3]);
    expect(await errorOf(say(t, "prepaid", "hello"))).toMatchObject({
      code: Code.ResourceExhausted,
      rawMessage: "quota exhausted for llm",
    });
    expect(left()).toEqual([-3]); // a refused call reports nothing
    // The backend counted what was reported and sends a fresh figure: it replaces the local one.
    await pushKeys(false, [active("prepaid", { quotas: [{ module: "llm", remaining: 100 }] })]);
    expect(left()).toEqual([100]);
    expect(await errorOf(say(t, "prepaid", "hello"))).toBe("ok");
    expect(left()).toEqual([95]);
  });

  it("reportUsage with the raw key or a record debits the same fingerprint", async () => {
    await pushKeys(false, [active("direct", { quotas: [{ module: "asr", remaining: 10 }] })]);
    await billing.reportUsage({ apiKey: "direct", module: "asr", model: "w", usage: 4 });
    await billing.reportUsage({ apiKey: "direct", module: "llm", model: "w", usage: 4 });
    expect(quotasLeft(billing.keys.rulesOf(hashApiKey("direct")) as KeyRules)).toEqual([6]);
    // A refused report debits nothing.
    await expect(
      billing.reportUsage({ apiKey: "direct", module: "asr", model: "", usage: 4 }),
    ).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    expect(quotasLeft(billing.keys.rulesOf(hashApiKey("direct")) as KeyRules)).toEqual([6]);
  });
});

describe("expiry is decided at call time", () => {
  it("a key that expires while the process runs is refused from then on, without an update", async () => {
    await pushKeys(false, [active("soon", { expiresAtMs: Date.now() + 1500 })]);
    const t = createGrpcWebTransport({ baseUrl: server.url, httpVersion: "2" });
    expect(await errorOf(say(t, "soon"))).toBe("ok");
    await sleep(1700);
    expect(await errorOf(say(t, "soon"))).toMatchObject({
      code: Code.Unauthenticated,
      rawMessage: "API key expired",
    });
  });
});

describe("a real @grpc/grpc-js client sees each status and retry-after", () => {
  function call(key: string): Promise<{ code: number; details: string; retryAfter: unknown }> {
    const Client = grpc.makeGenericClientConstructor({}, "x");
    const c = new Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    md.set("api-key", key);
    return new Promise((resolve) => {
      c.makeUnaryRequest(
        "/test.v1.EchoService/Say",
        (arg: Buffer) => arg,
        (buf: Buffer) => buf,
        Buffer.from([0x0a, 0x02, 0x68, 0x69]), // EchoRequest { text: "hi" }
        md,
        (err) => {
          c.close();
          resolve(
            err
              ? {
                  code: err.code as number,
                  details: err.details,
                  retryAfter: err.metadata.get("retry-after")[0],
                }
              : { code: grpc.status.OK, details: "", retryAfter: undefined },
          );
        },
      );
    });
  }

  it("16 expired, 7 method, 8 rate limit with retry-after, 8 quota", async () => {
    await pushKeys(true, [
      active("expired", { expiresAtMs: Date.now() - 1 }),
      active("tts-only", { allowedMethods: ["demo.v1.AiService/*"] }),
      active("limited", { rateLimits: [{ limit: 1, windowSeconds: 30 }] }),
      active("prepaid-empty", { quotas: [{ module: "llm", remaining: -5 }] }),
    ]);
    expect(await call("expired")).toMatchObject({
      code: grpc.status.UNAUTHENTICATED,
      details: "API key expired",
    });
    const denied = await call("tts-only");
    expect(denied.code).toBe(grpc.status.PERMISSION_DENIED);
    // connect-node percent-encodes grpc-message with encodeURIComponent and grpc-js decodes it with
    // decodeURI, which leaves "%2F": grpc-js callers see "EchoService%2FSay" (connect clients "/").
    expect(decodeURIComponent(denied.details)).toBe("API key may not call test.v1.EchoService/Say");
    expect(await call("limited")).toMatchObject({ code: grpc.status.OK });
    const limited = await call("limited");
    expect(limited.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(Number(limited.retryAfter)).toBeGreaterThanOrEqual(25);
    expect(limited.details).toBe(`rate limit exceeded (retry after ${limited.retryAfter} s)`);
    expect(await call("prepaid-empty")).toMatchObject({
      code: grpc.status.RESOURCE_EXHAUSTED,
      details: "quota exhausted for llm",
    });
  });
});
