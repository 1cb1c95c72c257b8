import {
  ConnectError,
  type ConnectRouter,
  createClient,
  type Transport,
} from "@connectrpc/connect";
import { KeyState } from "../../gen/billing/v1/usage_pb.js";
import {
  type ApiKeyDecision,
  BillingClient,
  billingCaller,
  meteredStream,
  reportUsageFor,
  requireApiKey,
} from "../../src/index.js";
import { EchoService } from "../gen/test/v1/echo_pb.js";
import { AedesBroker } from "./aedes-broker.js";
import { handlerRuns, startServer } from "./echo-server.js";
import { type KeyEntry, keyUpdate, testPublicKeys } from "./fixtures.js";
import { sleep, waitUntil } from "./time.js";

// Issue 14's test world: an embedded broker, a BillingClient trusting the test signer, and the echo
// service behind requireApiKey() (Say reports its text length as "llm" usage; SayMany sends 10
// messages 40 ms apart and bills what went out with meteredStream).

/** Each `onDecision` call, and each stream's billed count, in order. */
export const decisions: ApiKeyDecision[] = [];
export const billedStreams: number[] = [];

/** The echo routes, with SayMany sending 10 messages 40 ms apart and billing what went out. */
export function routes(router: ConnectRouter) {
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
          await sleep(40);
          yield { text: `${req.text}${i}` };
        }
      }
      yield* meteredStream(
        ten(),
        async (sent) => {
          billedStreams.push(sent);
          await reportUsageFor(ctx, { module: "llm", model: "stream", usage: sent });
        },
        { signal: ctx.signal },
      );
    },
    health: () => ({ text: "ok" }),
  });
}

/** An active key with `extra` (rules). */
export const active = (key: string, extra: Partial<KeyEntry> = {}): KeyEntry => ({
  key,
  state: KeyState.ACTIVE,
  appId: `app-${key}`,
  ...extra,
});

export async function errorOf(p: Promise<unknown>): Promise<ConnectError | "ok"> {
  try {
    await p;
    return "ok";
  } catch (e) {
    return ConnectError.from(e);
  }
}

export const say = (t: Transport, key: string, text = "hi") =>
  createClient(EchoService, t).say({ text }, { headers: { "api-key": key } });

/** Starts the world; `close()` stops what it started. */
export async function startRulesWorld() {
  const broker = await AedesBroker.create();
  const billing = new BillingClient({
    brokerHost: "127.0.0.1",
    brokerPort: broker.port,
    tls: false,
    heartbeatIntervalMs: 0,
    logger: () => {},
    keyUpdatePublicKeys: testPublicKeys,
  });
  const server = await startServer(routes, [
    requireApiKey({ exempt: ["test.v1.EchoService/Health"], onDecision: (d) => decisions.push(d) }),
  ]);
  await billing.connect();
  await waitUntil(() => broker.payloads("billing/keys/request").length > 0, 5000, "subscribed");
  return {
    broker,
    billing,
    server,
    /** Publishes a signed update and waits until the client applied it. */
    async pushKeys(snapshot: boolean, keys: KeyEntry[]) {
      const before = billing.stats().keyUpdates;
      await broker.publish("billing/keys/update", keyUpdate(keys, snapshot));
      await waitUntil(() => billing.stats().keyUpdates > before, 5000, "key update applied");
    },
    async close() {
      await server.close();
      await billing.close();
      await broker.close();
    },
  };
}
