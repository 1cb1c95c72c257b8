import { Code, type ConnectError } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KeyState } from "../../../gen/billing/v1/usage_pb.js";
import {
  BillingClient,
  type RequireApiKeyOptions,
  requireApiKey,
  type VerifiedKey,
} from "../../../src/index.js";
import { MIN_RULE_STATES, VerifyRuleStates } from "../../../src/interceptor/verify-rule-states.js";
import { keyRulesOf } from "../../../src/keys/key-rules.js";
import { AedesBroker } from "../../helpers/aedes-broker.js";
import { handlerRuns, startServer } from "../../helpers/echo-server.js";
import { errorOf, routes, say } from "../../helpers/rules-world.js";

// A verifier's rate limits and quotas hold whatever the answer cache does: its buckets and the
// usage reported since the answer live apart from the cached answer, so `cache: { ttlMs: 0 }`
// (nothing cached) keeps them, as do 1 ms, an hour, a cache of one entry and the defaults.

let broker: AedesBroker;
let billing: BillingClient;
beforeAll(async () => {
  broker = await AedesBroker.create();
  billing = new BillingClient({
    brokerHost: "127.0.0.1",
    brokerPort: broker.port,
    tls: false,
    heartbeatIntervalMs: 0,
    logger: () => {},
  });
  await billing.connect(); // reportUsageFor (Say reports its text length as "llm") debits
});
afterAll(async () => {
  await billing.close();
  await broker.close();
});

/** A server whose verifier answers `answer(call number)`, counting its calls; `close()` stops it. */
async function serve(cache: RequireApiKeyOptions["cache"], answer: (n: number) => VerifiedKey) {
  const counter = { calls: 0 };
  const server = await startServer(routes, [
    requireApiKey({ verify: async () => answer(counter.calls++), cache }),
  ]);
  const t = createConnectTransport({ baseUrl: server.url, httpVersion: "2" });
  /** `n` calls one after another, 2 ms apart (so a 1 ms answer has expired): ok or the code. */
  const calls = async (n: number, text = "hi") => {
    const out: string[] = [];
    for (let i = 0; i < n; i++) {
      const e = await errorOf(say(t, "the-key", text));
      out.push(e === "ok" ? "ok" : Code[e.code]);
      await new Promise((r) => setTimeout(r, 2));
    }
    return out;
  };
  return { counter, calls, close: () => server.close() };
}

const count = (xs: string[], x: string) => xs.filter((y) => y === x).length;
const RULE = { limit: 1, windowSeconds: 1 };

const CACHES: Array<[string, RequireApiKeyOptions["cache"]]> = [
  ["ttlMs 0", { ttlMs: 0 }],
  ["ttlMs 1", { ttlMs: 1 }],
  ["ttlMs one hour", { ttlMs: 3_600_000 }],
  ["the defaults", undefined],
  ["maxEntries 1", { maxEntries: 1 }],
  ["ttlMs 0, maxEntries 1, negativeTtlMs 0", { ttlMs: 0, maxEntries: 1, negativeTtlMs: 0 }],
];

describe.each(CACHES)("verify with cache %s", (_, cache) => {
  it("3 per hour lets 3 of 20 calls in", async () => {
    const s = await serve(cache, () => ({
      appId: "a",
      rateLimits: [{ limit: 3, windowSeconds: 3600 }],
    }));
    try {
      const runs = handlerRuns.count;
      const out = await s.calls(20);
      expect(out.slice(0, 3)).toEqual(["ok", "ok", "ok"]);
      expect(count(out, "ResourceExhausted")).toBe(17);
      expect(handlerRuns.count - runs).toBe(3);
      if (cache?.ttlMs === 0) expect(s.counter.calls).toBe(20); // nothing was cached
    } finally {
      await s.close();
    }
  });

  it("the same limits answered in another order each time still let 3 in", async () => {
    const limits = [
      { limit: 3, windowSeconds: 3600 },
      { limit: 1000, windowSeconds: 60, module: "llm" },
      { limit: 50, windowSeconds: 1 },
    ];
    const s = await serve(cache, (n) => ({
      appId: "a",
      rateLimits: [...limits.slice(n % 3), ...limits.slice(0, n % 3)],
    }));
    try {
      expect(count(await s.calls(12), "ok")).toBe(3);
    } finally {
      await s.close();
    }
  });

  it("a usage limit keeps the reported usage: 15 reported against 10 per hour refuses", async () => {
    const s = await serve(cache, () => ({
      appId: "a",
      rateLimits: [{ limit: 10, windowSeconds: 3600, module: "llm" }],
    }));
    try {
      expect(await s.calls(3, "x".repeat(15))).toEqual([
        "ok",
        "ResourceExhausted",
        "ResourceExhausted",
      ]);
    } finally {
      await s.close();
    }
  });

  it("a quota keeps what was reported while the verifier's figure stays; a new figure replaces it", async () => {
    let remaining = 7;
    const s = await serve(cache, () => ({ appId: "a", quotas: [{ module: "llm", remaining }] }));
    try {
      // 7 → 2 → -3: the third call is refused, however often the verifier said 7.
      expect(await s.calls(4, "hello")).toEqual([
        "ok",
        "ok",
        "ResourceExhausted",
        "ResourceExhausted",
      ]);
      if (cache?.ttlMs === 0 || cache?.ttlMs === 1) {
        // Fresh answers: the new figure replaces the local one (8 → 3 → -2).
        remaining = 8; // its backend counted the 10 units (7 - 10 = -3) and granted 11 more
        expect(await s.calls(4, "hello")).toEqual([
          "ok",
          "ok",
          "ResourceExhausted",
          "ResourceExhausted",
        ]);
      }
    } finally {
      await s.close();
    }
  });
});

describe("the rule states", () => {
  it("keep a key's bucket while other valid keys come and go (nothing cached)", async () => {
    const server = await startServer(routes, [
      requireApiKey({
        verify: async (k) => ({
          appId: k,
          rateLimits: [{ limit: k === "the-key" ? 3 : 1000, windowSeconds: 3600 }],
        }),
        cache: { ttlMs: 0, maxEntries: 1 },
      }),
    ]);
    try {
      const t = createConnectTransport({ baseUrl: server.url, httpVersion: "2" });
      const round = async () => {
        const out: string[] = [];
        for (let i = 0; i < 4; i++) {
          const e = await errorOf(say(t, "the-key"));
          out.push(e === "ok" ? "ok" : Code[(e as ConnectError).code]);
        }
        return out;
      };
      expect(await round()).toEqual(["ok", "ok", "ok", "ResourceExhausted"]);
      for (let i = 0; i < 500; i += 50) {
        const batch = Array.from({ length: 50 }, (_, j) => errorOf(say(t, `other-${i + j}`)));
        expect(await Promise.all(batch)).toEqual(Array(50).fill("ok"));
      }
      expect(await round()).toEqual(Array(4).fill("ResourceExhausted"));
    } finally {
      await server.close();
    }
  });

  // A refused answer (blocked, expired) takes no place among the rule states: the old code
  // adopted every answer's rules, so 10,000 refused keys gave the-key full buckets again.
  it.each<[string, (k: string) => VerifiedKey]>([
    ["blocked", () => ({ appId: "x", state: KeyState.BLOCKED, rateLimits: [RULE] })],
    ["expired", () => ({ appId: "x", expiresAt: Date.now() - 1000, rateLimits: [RULE] })],
  ])(
    "keep a live key's bucket however many %s keys with rules are answered",
    async (_, refused) => {
      const server = await startServer(routes, [
        requireApiKey({
          verify: async (k) =>
            k === "the-key"
              ? { appId: "a", rateLimits: [{ limit: 3, windowSeconds: 3600 }] }
              : refused(k),
          cache: { ttlMs: 0, maxEntries: 1 },
        }),
      ]);
      try {
        const t = createConnectTransport({ baseUrl: server.url, httpVersion: "2" });
        const code = async (key: string) => {
          const e = await errorOf(say(t, key));
          return e === "ok" ? "ok" : Code[(e as ConnectError).code];
        };
        const round = async () => {
          const out: string[] = [];
          for (let i = 0; i < 4; i++) out.push(await code("the-key"));
          return out;
        };
        expect(await round()).toEqual(["ok", "ok", "ok", "ResourceExhausted"]);
        // More refused keys than the rule states hold (10,000): none takes a place among them.
        for (let i = 0; i < MIN_RULE_STATES + 200; i += 200) {
          const batch = Array.from({ length: 200 }, (_, j) => code(`refused-${i + j}`));
          expect(new Set(await Promise.all(batch)).has("ok")).toBe(false);
        }
        expect(await round()).toEqual(Array(4).fill("ResourceExhausted"));
      } finally {
        await server.close();
      }
    },
    60_000,
  );

  it("are bounded: max(maxEntries, 10,000) keys, least recently used out first", () => {
    const rules = () => keyRulesOf({ rateLimits: [{ limit: 1, windowSeconds: 60 }] });
    const states = new VerifyRuleStates(1);
    const first = states.adopt("first", rules() as NonNullable<ReturnType<typeof rules>>);
    for (let i = 1; i < MIN_RULE_STATES; i++) states.adopt(`k${i}`, rules() as never);
    expect(states.rulesOf("first")).toBe(first.rules);
    states.touch("first", first); // used again: the oldest is now k1
    states.adopt("one-more", rules() as never);
    expect(states.rulesOf("first")).toBe(first.rules);
    expect(states.rulesOf("k1")).toBeUndefined();
    const big = new VerifyRuleStates(MIN_RULE_STATES + 5);
    for (let i = 0; i < MIN_RULE_STATES + 5; i++) big.adopt(`k${i}`, rules() as never);
    expect(big.rulesOf("k0")).toBeDefined();
    big.adopt("one-more", rules() as never);
    expect(big.rulesOf("k0")).toBeUndefined();
  });
});

describe("cache options that would turn the bounds off", () => {
  it.each<[string, RequireApiKeyOptions]>([
    ["cache.ttlMs", { cache: { ttlMs: Number.NaN } }],
    ["cache.ttlMs", { cache: { ttlMs: -1 } }],
    ["cache.negativeTtlMs", { cache: { negativeTtlMs: Number.NaN } }],
    ["cache.maxEntries", { cache: { maxEntries: 0 } }],
    ["cache.maxEntries", { cache: { maxEntries: Number.NaN } }],
    ["cache.maxEntries", { cache: { maxEntries: Number.POSITIVE_INFINITY } }],
    ["cache.maxEntries", { cache: { maxEntries: 2.5 } }],
    ["verifyTimeoutMs", { verifyTimeoutMs: -5 }],
  ])("%s: refused with INVALID_ARGUMENT naming it (%o)", (field, options) => {
    expect(() => requireApiKey({ verify: async () => null, ...options })).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT", field }),
    );
  });
});
