import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type BillingClient, hashApiKey } from "../../../../src/index.js";
import { EchoService } from "../../../gen/test/v1/echo_pb.js";
import type { AedesBroker } from "../../../helpers/aedes-broker.js";
import { handlerRuns } from "../../../helpers/echo-server.js";
import { decodeRecords, type KeyEntry } from "../../../helpers/fixtures.js";
import {
  active,
  billedStreams,
  decisions,
  errorOf,
  say,
  startRulesWorld,
} from "../../../helpers/rules-world.js";
import { waitUntil } from "../../../helpers/time.js";

// Issue 14: expiry, allowed methods, rate limits and quotas pushed with the key list and decided
// in the interceptor: each decision over real Connect, gRPC and gRPC-web calls, and streams.
let world: Awaited<ReturnType<typeof startRulesWorld>>;
let broker: AedesBroker;
let billing: BillingClient;
let server: { url: string; port: number };
const pushKeys = (snapshot: boolean, keys: KeyEntry[]) => world.pushKeys(snapshot, keys);
beforeAll(async () => {
  world = await startRulesWorld();
  ({ broker, billing, server } = world);
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
    await waitUntil(() => billedStreams.length > billed, 5000, "the stream billed");
    expect(billedStreams.at(-1)).toBe(3);
    await waitUntil(() => broker.payloads("billing/report").length > reports, 5000, "record");
    const rec = decodeRecords(broker.payloads("billing/report").slice(reports)).at(-1);
    expect(rec).toMatchObject({ apiKeySha256: hashApiKey("echo-all"), model: "stream", usage: 3n });
  });
});
