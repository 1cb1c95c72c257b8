import {
  Code,
  ConnectError,
  type ConnectRouter,
  createClient,
  type Transport,
} from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { KeyState } from "../../gen/billing/v1/usage_pb.js";
import {
  type ApiKeyDecision,
  BillingClient,
  billingCaller,
  hashApiKey,
  meteredStream,
  reportUsageFor,
  requireApiKey,
} from "../../src/index.js";
import { type KeyRules, quotasLeft } from "../../src/keys/key-rules.js";
import { EchoService } from "../gen/test/v1/echo_pb.js";
import { AedesBroker, until } from "../helpers/aedes-broker.js";
import { handlerRuns, startServer } from "../helpers/echo-server.js";
import { decodeRecords, type KeyEntry, keyUpdate, testPublicKeys } from "../helpers/fixtures.js";

// Issue 14: expiry, allowed methods, rate limits and quotas pushed with the key list and decided
// in the interceptor, over real Connect, gRPC and gRPC-web calls (and a grpc-js client).
let broker: AedesBroker;
let billing: BillingClient;
let server: Awaited<ReturnType<typeof startServer>>;
const decisions: ApiKeyDecision[] = [];
const billedStreams: number[] = [];

/** The echo routes, with SayMany sending 10 messages 40 ms apart and billing what went out. */
function routes(router: ConnectRouter) {
  router.service(EchoService, {
    say: (req, ctx) => {
      handlerRuns.count++;
      return reportUsageFor(ctx, { module: "llm", model: "echo", usage: req.text.length }).then(
        () => ({ text: req.text, appId: ctx.values.get(billingCaller)?.appId ?? "" }),
      );
    },
    async *sayMany(req, ctx) {
      handlerRuns.count++;
      async function* ten() {
        for (let i = 0; i < 10; i++) {
          await new Promise((r) => setTimeout(r, 40));
          yield { text: `${req.text}${i}` };
        }
      }
      yield* meteredStream(ten(), async (sent) => {
        billedStreams.push(sent);
        await reportUsageFor(ctx, { module: "llm", model: "stream", usage: sent });
      });
    },
    health: () => ({ text: "ok" }),
  });
}

async function pushKeys(snapshot: boolean, keys: KeyEntry[]) {
  const before = billing.stats().keyUpdates;
  await broker.publish("billing/keys/update", keyUpdate(keys, snapshot));
  await until(() => billing.stats().keyUpdates > before, 5000, "key update applied");
}

const active = (key: string, extra: Partial<KeyEntry> = {}): KeyEntry => ({
  key,
  state: KeyState.ACTIVE,
  appId: `app-${key}`,
  ...extra,
});

beforeAll(async () => {
  broker = await AedesBroker.create();
  billing = new BillingClient({
    brokerHost: "127.0.0.1",
    brokerPort: broker.port,
    tls: false,
    heartbeatIntervalMs: 0,
    logger: () => {},
    keyUpdatePublicKeys: testPublicKeys,
  });
  server = await startServer(routes, [
    requireApiKey({ exempt: ["test.v1.EchoService/Health"], onDecision: (d) => decisions.push(d) }),
  ]);
  await billing.connect();
  await until(() => broker.payloads("billing/keys/request").length > 0, 5000, "subscribed");
});
afterAll(async () => {
  await server.close();
  await billing.close();
  await broker.close();
});
beforeEach(() => {
  decisions.length = 0;
});

const transports: Array<[string, () => Transport]> = [
  ["Connect", () => createConnectTransport({ baseUrl: server.url, httpVersion: "2" })],
  ["gRPC", () => createGrpcTransport({ baseUrl: server.url })],
  ["gRPC-web", () => createGrpcWebTransport({ baseUrl: server.url, httpVersion: "2" })],
];

async function errorOf(p: Promise<unknown>): Promise<ConnectError | "ok"> {
  try {
    await p;
    return "ok";
  } catch (e) {
    return ConnectError.from(e);
  }
}

const say = (t: Transport, key: string, text = "hi") =>
  createClient(EchoService, t).say({ text }, { headers: { "api-key": key } });

describe.each(transports)("each decision over %s", (name, makeTransport) => {
  beforeAll(async () => {
    await pushKeys(true, [
      active("expired", { expiresAtMs: Date.now() - 1000 }),
      active("tts-only", {
        allowedMethods: ["demo.v1.AiService/Speak", "test.v1.EchoService/Collect"],
      }),
      active("echo-all", { allowedMethods: ["test.v1.EchoService/*"] }),
      active("one-per-minute", { rateLimits: [{ limit: 1, windowSeconds: 60 }] }),
      active("prepaid-empty", { quotas: [{ module: "llm", remaining: 0 }] }),
      active("all-rules", {
        expiresAtMs: Date.now() + 3_600_000,
        allowedMethods: ["test.v1.EchoService/Say"],
        rateLimits: [{ limit: 100, windowSeconds: 1 }],
        quotas: [{ module: "llm", remaining: 1000 }],
      }),
    ]);
  });

  it("expired → Unauthenticated 'API key expired', before the handler", async () => {
    const runs = handlerRuns.count;
    const before = billing.stats().decisions.expired;
    const e = await errorOf(say(makeTransport(), "expired"));
    expect(e).toMatchObject({ code: Code.Unauthenticated, rawMessage: "API key expired" });
    expect(handlerRuns.count).toBe(runs);
    expect(decisions.map((d) => [d.outcome, d.code])).toEqual([["expired", Code.Unauthenticated]]);
    expect(billing.stats().decisions.expired).toBe(before + 1);
  });

  it("a method not allowed → PermissionDenied naming the method; Service/* allows the service", async () => {
    const e = await errorOf(say(makeTransport(), "tts-only"));
    expect(e).toMatchObject({
      code: Code.PermissionDenied,
      rawMessage: "API key may not call test.v1.EchoService/Say",
    });
    expect(decisions.at(-1)?.outcome).toBe("method_denied");
    expect((await say(makeTransport(), "echo-all")).appId).toBe("app-echo-all");
    expect((await say(makeTransport(), "all-rules")).appId).toBe("app-all-rules");
  });

  it("a rate limit at its limit → ResourceExhausted with retry-after (header and message)", async () => {
    await pushKeys(false, [
      active(`rl-${name}`, { rateLimits: [{ limit: 1, windowSeconds: 60 }] }),
    ]);
    expect((await say(makeTransport(), `rl-${name}`)).text).toBe("hi");
    const before = billing.stats().decisions.rate_limited;
    const e = await errorOf(say(makeTransport(), `rl-${name}`));
    expect(e).toBeInstanceOf(ConnectError);
    const err = e as ConnectError;
    expect(err.code).toBe(Code.ResourceExhausted);
    // One token per 60 s, just taken: about 60 s to wait.
    const seconds = Number(err.metadata.get("retry-after"));
    expect(seconds).toBeGreaterThanOrEqual(55);
    expect(seconds).toBeLessThanOrEqual(60);
    expect(err.rawMessage).toBe(`rate limit exceeded (retry after ${seconds} s)`);
    expect(decisions.at(-1)).toMatchObject({
      outcome: "rate_limited",
      code: Code.ResourceExhausted,
    });
    expect(billing.stats().decisions.rate_limited).toBe(before + 1);
  });

  it("a quota at or below zero → ResourceExhausted 'quota exhausted for <module>'", async () => {
    const e = await errorOf(say(makeTransport(), "prepaid-empty"));
    expect(e).toMatchObject({
      code: Code.ResourceExhausted,
      rawMessage: "quota exhausted for llm",
    });
    expect((e as ConnectError).metadata.get("retry-after")).toBeNull();
    expect(decisions.at(-1)?.outcome).toBe("quota_exhausted");
  });

  it("checks a streaming call before its first message", async () => {
    const runs = handlerRuns.count;
    const drain = async () => {
      for await (const _ of createClient(EchoService, makeTransport()).sayMany(
        { text: "x" },
        { headers: { "api-key": "prepaid-empty" } },
      )) {
        throw new Error("a message arrived");
      }
    };
    expect(await errorOf(drain())).toMatchObject({ code: Code.ResourceExhausted });
    expect(handlerRuns.count).toBe(runs);
  });

  it("a server stream the client aborts after 3 of 10 messages is billed for 3", async () => {
    await billing.flush(5000);
    const reports = broker.payloads("billing/report").length;
    const billed = billedStreams.length;
    const ac = new AbortController();
    let got = 0;
    const stream = createClient(EchoService, makeTransport()).sayMany(
      { text: "s" },
      { headers: { "api-key": "echo-all" }, signal: ac.signal },
    );
    const ended = await errorOf(
      (async () => {
        for await (const _ of stream) {
          got++;
          if (got === 3) ac.abort();
        }
      })(),
    );
    expect(ended).toMatchObject({ code: Code.Canceled });
    expect(got).toBe(3);
    await until(() => billedStreams.length > billed, 5000, "the stream billed");
    expect(billedStreams.at(-1)).toBe(3);
    await until(() => broker.payloads("billing/report").length > reports, 5000, "record");
    const rec = decodeRecords(broker.payloads("billing/report").slice(reports)).at(-1);
    expect(rec).toMatchObject({ apiKeySha256: hashApiKey("echo-all"), model: "stream", usage: 3n });
  });
});

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
    await new Promise((r) => setTimeout(r, 2100));
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
    await new Promise((r) => setTimeout(r, 1700));
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
