import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { KeyState } from "../../../gen/billing/v1/usage_pb.js";
import {
  BillingClient,
  type BillingClientOptions,
  getBillingClient,
  requireApiKey,
} from "../../../src/index.js";
import { EchoService } from "../../gen/test/v1/echo_pb.js";
import { AedesBroker } from "../../helpers/aedes-broker.js";
import { startEchoServer } from "../../helpers/echo-server.js";
import {
  keyUpdate,
  keyUpdateMessage,
  testPublicKeys,
  unsignedKeyUpdate,
} from "../../helpers/fixtures.js";
import { waitUntil } from "../../helpers/time.js";

// "no keyUpdatePublicKeys are configured" is a warning for a process that checks keys: one that
// only reports usage (no requireApiKey) never needs the key list, and must not be told to
// configure it. A process that checks keys is told once, at its first key decision, whether or
// not a key update has arrived yet.
let broker: AedesBroker;
const logs: string[] = [];
const logger = (level: string, msg: string) => logs.push(`${level}: ${msg}`);
const told = () => logs.filter((l) => l.includes("keyUpdatePublicKeys"));
const GOOD = { key: "good-key", state: KeyState.ACTIVE, appId: "app-good" };

beforeAll(async () => {
  broker = await AedesBroker.create();
});
afterAll(async () => broker.close());
afterEach(async () => {
  await getBillingClient()
    ?.close(100)
    .catch(() => {});
  logs.length = 0;
});

async function client(extra: BillingClientOptions = {}) {
  const c = new BillingClient({
    brokerHost: "127.0.0.1",
    brokerPort: broker.port,
    tls: false,
    heartbeatIntervalMs: 0,
    logger,
    ...extra,
  });
  await c.connect();
  await waitUntil(() => broker.payloads("billing/keys/request").length > 0, 5000, "subscribed");
  return c;
}
const refused = (c: BillingClient) =>
  Object.values(c.stats().keyUpdatesRefused).reduce((a, b) => a + b, 0);

async function call(url: string): Promise<Code | "ok"> {
  const echo = createClient(
    EchoService,
    createConnectTransport({ baseUrl: url, httpVersion: "2" }),
  );
  try {
    await echo.say({ text: "x" }, { headers: { "api-key": "good-key" } });
    return "ok";
  } catch (e) {
    return ConnectError.from(e).code;
  }
}

describe("the warning about missing keyUpdatePublicKeys", () => {
  it("a reporting-only process is not told, however many key updates arrive", async () => {
    const c = await client();
    await broker.publish("billing/keys/update", keyUpdate([GOOD], true));
    await broker.publish("billing/keys/update", unsignedKeyUpdate(keyUpdateMessage([GOOD], true)));
    await waitUntil(() => refused(c) === 2, 5000, "both updates refused");
    await c.reportUsage({ apiKey: "good-key", module: "llm", model: "m", usage: 1 });
    await c.flush(5000);
    expect(told()).toEqual([]);
  });

  it("a process that checks keys is told once, at its first decision, before any update arrived", async () => {
    const server = await startEchoServer([requireApiKey()]);
    try {
      const c = await client();
      expect(told()).toEqual([]); // not at construction: it may only report
      expect(await call(server.url)).toBe(Code.Unavailable);
      expect(await call(server.url)).toBe(Code.Unavailable);
      await broker.publish("billing/keys/update", keyUpdate([GOOD], true));
      await waitUntil(() => refused(c) === 1, 5000, "the update refused");
      expect(await call(server.url)).toBe(Code.Unavailable);
      expect(told()).toEqual([
        "warn: requireApiKey() checks keys against the pushed key list, but no keyUpdatePublicKeys are configured: every key update is refused and the key list never loads, so requireApiKey() answers Unavailable (usage records still go out). Configure keyUpdatePublicKeys with the billing backend's Ed25519 public key.",
      ]);
    } finally {
      await server.close();
    }
  });

  it("is not said when the keys are configured, unsigned updates are accepted, or a verifier checks keys", async () => {
    for (const [extra, interceptor] of [
      [{ keyUpdatePublicKeys: testPublicKeys }, requireApiKey()],
      [{ insecureAcceptUnsignedKeyUpdates: true }, requireApiKey()],
      [{}, requireApiKey({ verify: async () => ({ appId: "app-v" }) })],
    ] as const) {
      const server = await startEchoServer([interceptor]);
      try {
        await client(extra);
        await call(server.url);
        expect(told().filter((l) => !l.includes("insecureAcceptUnsignedKeyUpdates"))).toEqual([]);
      } finally {
        await server.close();
        await getBillingClient()?.close(100);
        logs.length = 0;
      }
    }
  });
});
