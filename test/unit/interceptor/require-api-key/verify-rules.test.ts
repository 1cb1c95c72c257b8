import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BillingClient, requireApiKey, type VerifiedKey } from "../../../../src/index.js";
import { EchoService } from "../../../gen/test/v1/echo_pb.js";
import { AedesBroker } from "../../../helpers/aedes-broker.js";
import { handlerRuns, startEchoServer } from "../../../helpers/echo-server.js";
import { sleep } from "../../../helpers/time.js";

// Issue 14 with the `verify` option: a verifier may return the same rules as the pushed key
// list, with the same effects; usage reported for the key debits the cached answer.
let broker: AedesBroker;
let billing: BillingClient;
let server: Awaited<ReturnType<typeof startEchoServer>>;
const answers = new Map<string, VerifiedKey>();
let verifierCalls = 0;

beforeAll(async () => {
  broker = await AedesBroker.create();
  billing = new BillingClient({
    brokerHost: "127.0.0.1",
    brokerPort: broker.port,
    tls: false,
    heartbeatIntervalMs: 0,
    logger: () => {},
  });
  await billing.connect();
  server = await startEchoServer([
    requireApiKey({
      verify: async (key) => {
        verifierCalls++;
        return answers.get(key) ?? null;
      },
      cache: { ttlMs: 400 },
    }),
  ]);
});
afterAll(async () => {
  await server.close();
  await billing.close();
  await broker.close();
});

async function errorOf(p: Promise<unknown>): Promise<ConnectError | "ok"> {
  try {
    await p;
    return "ok";
  } catch (e) {
    return ConnectError.from(e);
  }
}

describe.each([
  ["Connect", () => createConnectTransport({ baseUrl: server.url, httpVersion: "2" })],
  ["gRPC", () => createGrpcTransport({ baseUrl: server.url })],
] as Array<[string, () => Transport]>)("a verifier's rules over %s", (name, make) => {
  const say = (key: string, text = "hi") =>
    createClient(EchoService, make()).say({ text }, { headers: { "api-key": key } });
  const k = (s: string) => `${s}-${name}`;

  it("expired, method not allowed, rate limited (retry-after), quota exhausted", async () => {
    answers.set(k("exp"), { appId: "a", expiresAt: new Date(Date.now() - 1000) });
    answers.set(k("meth"), { appId: "a", allowedMethods: ["test.v1.EchoService/Health"] });
    answers.set(k("rate"), { appId: "a", rateLimits: [{ limit: 2, windowSeconds: 60 }] });
    answers.set(k("quota"), { appId: "a", quotas: [{ module: "llm", remaining: 0 }] });
    const runs = handlerRuns.count;
    expect(await errorOf(say(k("exp")))).toMatchObject({
      code: Code.Unauthenticated,
      rawMessage: "API key expired",
    });
    expect(await errorOf(say(k("meth")))).toMatchObject({
      code: Code.PermissionDenied,
      rawMessage: "API key may not call test.v1.EchoService/Say",
    });
    expect(await errorOf(say(k("quota")))).toMatchObject({
      code: Code.ResourceExhausted,
      rawMessage: "quota exhausted for llm",
    });
    expect(handlerRuns.count).toBe(runs);
    expect(await errorOf(say(k("rate")))).toBe("ok");
    expect(await errorOf(say(k("rate")))).toBe("ok");
    const e = await errorOf(say(k("rate")));
    expect(e).toMatchObject({ code: Code.ResourceExhausted });
    expect(Number((e as ConnectError).metadata.get("retry-after"))).toBeGreaterThanOrEqual(25);
  });

  it("reportUsageFor debits the cached quota; a fresh answer after ttlMs replaces it", async () => {
    answers.set(k("prepaid"), { appId: "a", quotas: [{ module: "llm", remaining: 7 }] });
    expect(await errorOf(say(k("prepaid"), "hello"))).toBe("ok"); // 7 → 2
    expect(await errorOf(say(k("prepaid"), "hello"))).toBe("ok"); // 2 → -3
    expect(await errorOf(say(k("prepaid"), "hello"))).toMatchObject({
      code: Code.ResourceExhausted,
      rawMessage: "quota exhausted for llm",
    });
    answers.set(k("prepaid"), { appId: "a", quotas: [{ module: "llm", remaining: 50 }] });
    await sleep(450); // the cached answer expires
    expect(await errorOf(say(k("prepaid"), "hello"))).toBe("ok");
  });

  it("malformed rules from the verifier refuse the call Unavailable (fail closed)", async () => {
    answers.set(k("bad"), { appId: "a", rateLimits: [{ limit: 5, windowSeconds: 0 }] });
    const before = verifierCalls;
    expect(await errorOf(say(k("bad")))).toMatchObject({ code: Code.Unavailable });
    expect(verifierCalls).toBe(before + 1);
  });
});

describe("moduleOf: a call is checked against its own module's quotas and usage limits", () => {
  it("a key out of TTS credit may still call the LLM method, not the TTS one", async () => {
    const guarded = await startEchoServer([
      requireApiKey({
        verify: async () => ({
          appId: "a",
          quotas: [
            { module: "tts", remaining: 0 },
            { module: "llm", remaining: 100 },
          ],
          rateLimits: [{ limit: 1, windowSeconds: 60, module: "tts" }],
        }),
        moduleOf: (m) => (m === "test.v1.EchoService/Say" ? "llm" : "tts"),
      }),
    ]);
    try {
      const c = createClient(EchoService, createGrpcTransport({ baseUrl: guarded.url }));
      const h = { headers: { "api-key": "mixed" } };
      expect(await errorOf(c.say({ text: "hi" }, h))).toBe("ok");
      const drain = async () => {
        for await (const _ of c.sayMany({ text: "x" }, h)) {
        }
      };
      expect(await errorOf(drain())).toMatchObject({
        code: Code.ResourceExhausted,
        rawMessage: "quota exhausted for tts",
      });
    } finally {
      await guarded.close();
    }
  });
});
