import { Code, type ConnectError } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { requireApiKey } from "../../../../src/index.js";
import { startServer } from "../../../helpers/echo-server.js";
import { errorOf, routes, say, startRulesWorld } from "../../../helpers/rules-world.js";

// The routes report usage for the verified caller (reportUsageFor): a process-wide client is open.
let w: Awaited<ReturnType<typeof startRulesWorld>>;
beforeAll(async () => {
  w = await startRulesWorld();
});
afterAll(async () => {
  await w?.close();
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
