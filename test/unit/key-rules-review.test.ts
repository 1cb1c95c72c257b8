import { sign } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, type ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type KeyUpdate,
  KeyUpdateSchema,
  SignedKeyUpdateSchema,
} from "../../gen/billing/v1/usage_pb.js";
import { meteredStream, requireApiKey } from "../../src/index.js";
import { keyRulesOf } from "../../src/keys/key-rules.js";
import { EchoService } from "../gen/test/v1/echo_pb.js";
import { startServer } from "../helpers/echo-server.js";
import { type KeyEntry, keyUpdateMessage, testSigner } from "../helpers/fixtures.js";
import { active, errorOf, routes, say, startRulesWorld } from "../helpers/rules-world.js";

// Review of issue 14: one key's rules that the client cannot enforce fail closed for that key
// only; the rest of the signed update (a block of another key above all) takes effect.

/** Signed by the trusted signer without signKeyUpdate's checks (a backend in another language). */
function signedAsIs(
  keys: KeyEntry[],
  snapshot: boolean,
  edit: (u: KeyUpdate) => void = () => {},
): Uint8Array {
  const u = keyUpdateMessage(keys, snapshot);
  edit(u);
  const keyUpdate = toBinary(KeyUpdateSchema, u);
  const signature = sign(null, keyUpdate, testSigner.privateKey);
  return toBinary(
    SignedKeyUpdateSchema,
    create(SignedKeyUpdateSchema, { keyUpdate, signature, signer: testSigner.name }),
  );
}

let w: Awaited<ReturnType<typeof startRulesWorld>>;
beforeAll(async () => {
  w = await startRulesWorld();
});
afterAll(async () => {
  await w?.close();
});

describe("a signed update with one key's rules out of range", () => {
  it("blocks A, fails closed for B (limit 0), lets C in, over Connect and gRPC", async () => {
    await w.pushKeys(true, [active("f2-a"), active("f2-b"), active("f2-c")]);
    const before = w.billing.stats();
    await w.broker.publish(
      "billing/keys/update",
      signedAsIs(
        [
          { key: "f2-a", state: 2, reason: "revoked" }, // KeyState.BLOCKED
          active("f2-b", { rateLimits: [{ limit: 0, windowSeconds: 60 }] }),
          active("f2-c", { rateLimits: [{ limit: 5, windowSeconds: 60 }] }),
        ],
        false,
      ),
    );
    const deadline = Date.now() + 5000;
    while (w.billing.stats().keyUpdates === before.keyUpdates && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const after = w.billing.stats();
    expect(after.keyUpdates).toBe(before.keyUpdates + 1);
    expect(after.keyUpdatesRefused.invalid).toBe(before.keyUpdatesRefused.invalid);
    expect(after.keysInvalidRules).toBe(before.keysInvalidRules + 1);
    for (const t of [
      createConnectTransport({ baseUrl: w.server.url, httpVersion: "2" }),
      createGrpcTransport({ baseUrl: w.server.url }),
    ]) {
      const a = (await errorOf(say(t, "f2-a"))) as ConnectError;
      expect([a.code, a.rawMessage]).toEqual([Code.PermissionDenied, "API key blocked: revoked"]);
      const b = (await errorOf(say(t, "f2-b"))) as ConnectError;
      expect([b.code, b.rawMessage]).toEqual([
        Code.PermissionDenied,
        "API key blocked: invalid rules",
      ]);
      expect(await errorOf(say(t, "f2-c"))).toBe("ok");
    }
  });

  it("clamps a limit up to 2^64-1 to 2^53-1 instead of refusing the update", async () => {
    const before = w.billing.stats();
    await w.broker.publish(
      "billing/keys/update",
      signedAsIs(
        [
          { key: "f2-d", state: 2, reason: "revoked" },
          active("f2-e", { rateLimits: [{ limit: 1, windowSeconds: 1 }] }),
        ],
        false,
        (u) => {
          (u.keys[1]?.rateLimits[0] as { limit: bigint }).limit = 2n ** 64n - 1n;
        },
      ),
    );
    const deadline = Date.now() + 5000;
    while (w.billing.stats().keyUpdates === before.keyUpdates && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(w.billing.stats().keyUpdates).toBe(before.keyUpdates + 1);
    expect(w.billing.stats().keysInvalidRules).toBe(before.keysInvalidRules);
    const t = createConnectTransport({ baseUrl: w.server.url, httpVersion: "2" });
    expect(((await errorOf(say(t, "f2-d"))) as ConnectError).code).toBe(Code.PermissionDenied);
    expect(await errorOf(say(t, "f2-e"))).toBe("ok");
  });
});

describe("the verify cache under a flood of unknown keys", () => {
  it("keeps a valid key's bucket: 10,000 unknown keys between rounds refill nothing", async () => {
    let verifierCalls = 0;
    const server = await startServer(routes, [
      requireApiKey({
        verify: async (k) => {
          verifierCalls++;
          return k === "f1-good"
            ? { appId: "a", rateLimits: [{ limit: 3, windowSeconds: 3600 }] }
            : null;
        },
      }),
    ]);
    try {
      const t = createConnectTransport({ baseUrl: server.url, httpVersion: "2" });
      const round = async () => {
        const out: string[] = [];
        for (let i = 0; i < 4; i++) {
          const e = await errorOf(say(t, "f1-good"));
          out.push(e === "ok" ? "ok" : Code[e.code]);
        }
        return out;
      };
      expect(await round()).toEqual(["ok", "ok", "ok", "ResourceExhausted"]);
      for (let i = 0; i < 10_000; i += 200) {
        const batch = Array.from({ length: 200 }, (_, j) => errorOf(say(t, `f1-bogus-${i + j}`)));
        for (const e of await Promise.all(batch))
          expect((e as ConnectError).code).toBe(Code.Unauthenticated);
      }
      expect(await round()).toEqual(Array(4).fill("ResourceExhausted"));
      expect(verifierCalls).toBe(1 + 10_000); // the valid key's answer stayed cached
    } finally {
      await server.close();
    }
  }, 60_000);
});

describe("a verifier's expiresAt that is not a time", () => {
  it("refuses the call Unavailable (an ISO string, an Invalid Date, NaN, Infinity), not never-expires", async () => {
    const answers: Record<string, unknown> = {
      iso: "2020-01-01T00:00:00Z",
      invalidDate: new Date("garbage"),
      nan: Number.NaN,
      inf: Number.POSITIVE_INFINITY,
      past: new Date(Date.now() - 1000),
      pastMs: Date.now() - 1000,
      future: new Date(Date.now() + 3_600_000),
      none: null,
    };
    const server = await startServer(routes, [
      requireApiKey({
        verify: async (k) =>
          k in answers ? ({ appId: "a", expiresAt: answers[k] } as never) : null,
      }),
    ]);
    try {
      for (const t of [
        createConnectTransport({ baseUrl: server.url, httpVersion: "2" }),
        createGrpcTransport({ baseUrl: server.url }),
      ]) {
        const seen: Record<string, string> = {};
        for (const k of Object.keys(answers)) {
          const e = await errorOf(say(t, k));
          seen[k] = e === "ok" ? "ok" : `${Code[e.code]} ${e.rawMessage}`;
        }
        expect(seen).toEqual({
          iso: "Unavailable API key check unavailable",
          invalidDate: "Unavailable API key check unavailable",
          nan: "Unavailable API key check unavailable",
          inf: "Unavailable API key check unavailable",
          past: "Unauthenticated API key expired",
          pastMs: "Unauthenticated API key expired",
          future: "ok",
          none: "ok",
        });
      }
    } finally {
      await server.close();
    }
  });
});

describe("meteredStream when the source stalls after the client cancelled", () => {
  it.each([
    ["Connect", (url: string) => createConnectTransport({ baseUrl: url, httpVersion: "2" })],
    ["gRPC", (url: string) => createGrpcTransport({ baseUrl: url })],
  ])("bills the 3 messages sent at once, exactly once (%s)", async (_name, make) => {
    const billed: number[] = [];
    let release: () => void = () => {};
    const stall = new Promise<void>((r) => {
      release = r;
    });
    const server = await startServer(
      (router) =>
        router.service(EchoService, {
          async *sayMany(req, ctx) {
            async function* slow() {
              for (let i = 0; i < 3; i++) yield { text: `${req.text}${i}` };
              await stall; // an upstream that never answers again
              yield { text: "late" };
            }
            yield* meteredStream(slow(), (sent) => billed.push(sent), { signal: ctx.signal });
          },
        }),
      [],
    );
    try {
      const ac = new AbortController();
      let got = 0;
      try {
        for await (const _ of createClient(EchoService, make(server.url)).sayMany(
          { text: "m" },
          { signal: ac.signal },
        )) {
          if (++got === 3) ac.abort();
        }
      } catch {
        // the client's own abort
      }
      expect(got).toBe(3);
      const deadline = Date.now() + 3000;
      while (billed.length === 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(billed).toEqual([3]);
      release();
      await new Promise((r) => setTimeout(r, 100));
      expect(billed).toEqual([3]); // once
    } finally {
      release();
      await server.close();
    }
  });
});

describe("retry-after after a deep usage debt", () => {
  it("is capped at 2^31-1 s and written in plain digits", async () => {
    await w.pushKeys(true, [
      active("f6-debt", { rateLimits: [{ limit: 1, windowSeconds: 4294967295, module: "llm" }] }),
    ]);
    await w.billing.reportUsage({ apiKey: "f6-debt", module: "llm", model: "m", usage: 2 ** 40 });
    for (const t of [
      createConnectTransport({ baseUrl: w.server.url, httpVersion: "2" }),
      createGrpcTransport({ baseUrl: w.server.url }),
    ]) {
      const e = (await errorOf(say(t, "f6-debt"))) as ConnectError;
      expect(e.code).toBe(Code.ResourceExhausted);
      expect(e.metadata.get("retry-after")).toBe("2147483647");
      expect(e.rawMessage).toBe("rate limit exceeded (retry after 2147483647 s)");
    }
  });
});

describe("plan ids", () => {
  it("share a plan only between equal rules (method order aside)", () => {
    const plan = (r: Parameters<typeof keyRulesOf>[0]) => keyRulesOf(r)?.plan;
    const a = plan({
      allowedMethods: ["a.B/C", "a.B/*"],
      rateLimits: [{ limit: 5, windowSeconds: 2 }],
    });
    expect(
      plan({ allowedMethods: ["a.B/*", "a.B/C"], rateLimits: [{ limit: 5, windowSeconds: 2 }] }),
    ).toBe(a);
    const others = [
      plan({ allowedMethods: ["a.B/C"], rateLimits: [{ limit: 5, windowSeconds: 2 }] }),
      plan({ allowedMethods: ["a.B/C", "a.B/*"], rateLimits: [{ limit: 5, windowSeconds: 20 }] }),
      plan({ allowedMethods: ["a.B/C", "a.B/*"], rateLimits: [{ limit: 52, windowSeconds: 2 }] }),
      plan({
        allowedMethods: ["a.B/C", "a.B/*"],
        rateLimits: [{ limit: 5, windowSeconds: 2, module: "x" }],
      }),
      plan({
        allowedMethods: ["a.B/C", "a.B/*"],
        rateLimits: [{ limit: 5, windowSeconds: 2 }],
        quotas: [{ module: "x", remaining: 1 }],
      }),
      plan({ rateLimits: [{ limit: 5, windowSeconds: 2, module: "x" }] }),
      plan({ quotas: [{ module: "x", remaining: 1 }] }),
    ];
    expect(new Set([a, ...others]).size).toBe(others.length + 1);
  });
});
