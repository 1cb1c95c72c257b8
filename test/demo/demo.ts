// npm run demo: billing-sdk's main job, end to end, in one process.
//
// By default it starts an embedded MQTT broker (Aedes) with TLS, using a throwaway CA made at
// start-up, and a password. Then it plays the billing backend (pushes a key list with an active
// and a blocked key, signed with an Ed25519 key made at start-up; consumes billing/report with
// createUsageConsumer into an embedded PGlite database), starts a Connect server guarded by
// requireApiKey() with an LLM-, a TTS- and an ASR-like method that report usage, makes calls with
// a good key, a blocked key and no key, and one call refused for each rule a key can carry
// (expired, a method it may not call, its rate limit, its quota), and prints what happened: at
// the end the records and the per-minute rollup read back from the database.
//
// Against a real broker the demo uses a topic prefix of its own (random unless --prefix is given)
// and client ids of its own, so that it never answers a real service's key requests and a real
// consumer never bills its fake usage.
//
//   npm run demo
//   npm run demo -- --broker mqtts://host:8883 --username u --password p --ca ca.pem [--prefix P]
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs, timestampNow } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { connectAsync } from "mqtt";
import {
  KeyState,
  type KeyStatus,
  KeyStatusSchema,
  KeyUpdateSchema,
  QuotaSchema,
  RateLimitSchema,
} from "../../gen/billing/v1/usage_pb.js";
import { createUsageConsumer } from "../../src/consumer/index.js";
import {
  BillingClient,
  billingTopics,
  hashApiKey,
  requireApiKey,
  signKeyUpdate,
} from "../../src/index.js";
import { createPostgresUsageStore } from "../../src/postgres/index.js";
import { AiService } from "../gen/demo/v1/ai_pb.js";
import { AedesBroker } from "../helpers/aedes-broker.js";
import { makePki } from "../helpers/certs.js";
import { startServer } from "../helpers/echo-server.js";
import { waitUntil } from "../helpers/time.js";
import { type RollupRow, readBack, type StoredRecord } from "./demo-readback.js";
import { aiRoutes } from "./demo-service.js";

const GOOD_KEY = "demo-key-good-0001";
const BLOCKED_KEY = "demo-key-blocked-0002";
const EXPIRED_KEY = "demo-key-expired-0003";
const TTS_ONLY_KEY = "demo-key-tts-only-0004";
const PREPAID_KEY = "demo-key-prepaid-0005";

export interface DemoResult {
  calls: Array<{ call: string; code: string }>;
  records: StoredRecord[];
  rollup: RollupRow[];
  stats: ReturnType<BillingClient["stats"]>;
}

export interface DemoOptions {
  /** mqtts://host:port or mqtt://host:port of a real broker; default: an embedded Aedes. */
  broker?: string | undefined;
  username?: string | undefined;
  password?: string | undefined;
  /** PEM CA file for the broker. */
  ca?: string | undefined;
  /**
   * Topic prefix. Default: `billing` on the embedded broker; on a real broker a random
   * `billing-demo-<hex>`, so that nothing real on it is touched.
   */
  prefix?: string | undefined;
  print?: (line: string) => void;
}

export async function runDemo(options: DemoOptions = {}): Promise<DemoResult> {
  const print = options.print ?? ((line: string) => console.log(line));
  const cleanup: Array<() => Promise<unknown>> = [];
  const embedded = options.broker === undefined;
  const own = randomBytes(3).toString("hex");
  const prefix = options.prefix ?? (embedded ? "billing" : `billing-demo-${own}`);
  const topics = billingTopics(prefix);
  if (!embedded) {
    // On a real broker the real services' prefix is never the demo's: its key list and fake
    // usage would reach them.
    if (prefix === "billing" || prefix.startsWith("billing/")) {
      throw new Error(
        `--prefix ${prefix} on a real broker would answer real services' key requests and bill fake usage: choose another prefix`,
      );
    }
    print(
      `demo       topic prefix "${prefix}" (the demo's own: nothing under "billing/" is read or written; --prefix to choose)`,
    );
  }
  print("demo       source: test/demo/demo.ts");
  // The embedded database takes a few seconds to start: it starts now, alongside the rest.
  const opening = createPostgresUsageStore();
  opening.catch(() => {});
  cleanup.push(() => opening.then((store) => store.close()));
  try {
    // 1. A broker: embedded (TLS with a throwaway CA, a password), or the one given.
    let host = "127.0.0.1";
    let port: number;
    let tls = true;
    let ca: string | undefined;
    let username = options.username;
    let password = options.password;
    if (options.broker === undefined) {
      const pki = makePki(["localhost", "127.0.0.1"]);
      username = "demo-service";
      password = "demo-password";
      const aedes = await AedesBroker.create({ pki, username, password });
      cleanup.push(() => aedes.close());
      port = aedes.port;
      ca = pki.ca;
      print(`broker     embedded Aedes on mqtts://127.0.0.1:${port} (TLS, throwaway CA, password)`);
    } else {
      const url = new URL(options.broker);
      host = url.hostname;
      tls = url.protocol === "mqtts:";
      port = Number(url.port || (tls ? 8883 : 1883));
      ca = options.ca === undefined ? undefined : readFileSync(options.ca, "utf8");
      print(`broker     ${options.broker}`);
    }
    const conn = { brokerHost: host, brokerPort: port, tls, ca, username, password };

    // 2. The billing backend: answers key-list requests with a snapshot signed by its key (made
    // here; the service gets the public key only), and consumes reports into PostgreSQL (an
    // embedded PGlite here) with createUsageConsumer.
    const signing = generateKeyPairSync("ed25519");
    const backend = await connectAsync({
      host,
      port,
      protocol: tls ? "mqtts" : "mqtt",
      ...(ca === undefined ? {} : { ca }),
      ...(username === undefined ? {} : { username }),
      ...(password === undefined ? {} : { password }),
      protocolVersion: 4,
      clientId: `demo-backend-${own}`,
    });
    cleanup.push(() => backend.endAsync());
    const status = (
      key: string,
      appId: string,
      state: KeyState,
      reason = "",
      rules: Partial<
        Pick<KeyStatus, "expiresAt" | "allowedMethods" | "rateLimits" | "quotas">
      > = {},
    ) => create(KeyStatusSchema, { apiKeySha256: hashApiKey(key), appId, state, reason, ...rules });
    const snapshot = signKeyUpdate(
      create(KeyUpdateSchema, {
        snapshot: true,
        version: BigInt(Date.now()), // any increasing number: clients refuse older ones
        audience: "demo", // the deployment it is for: the services' keyUpdateAudience
        sentAt: timestampNow(),
        keys: [
          status(BLOCKED_KEY, "demo-app-2", KeyState.BLOCKED, "unpaid invoice"),
          // Rules (issue 14), decided by the service in-process: the good key may make 3 calls a
          // minute; the others expired, may call only Speak, or have no LLM credit left.
          status(GOOD_KEY, "demo-app", KeyState.ACTIVE, "", {
            rateLimits: [create(RateLimitSchema, { limit: 3n, windowSeconds: 60 })],
          }),
          status(EXPIRED_KEY, "demo-app-3", KeyState.ACTIVE, "", {
            expiresAt: timestampFromMs(Date.now() - 86_400_000),
          }),
          status(TTS_ONLY_KEY, "demo-app-4", KeyState.ACTIVE, "", {
            allowedMethods: ["demo.v1.AiService/Speak"],
          }),
          status(PREPAID_KEY, "demo-app-5", KeyState.ACTIVE, "", {
            quotas: [create(QuotaSchema, { module: "llm", remaining: 0n })],
          }),
        ],
      }),
      signing.privateKey,
      "demo-backend",
    );
    backend.on("message", (topic) => {
      if (topic === topics.keysRequest) {
        backend.publish(topics.keysUpdate, Buffer.from(snapshot), { qos: 1 });
      }
    });
    await backend.subscribeAsync(topics.keysRequest, { qos: 1 });
    const store = await opening;
    const consumer = createUsageConsumer({
      ...conn,
      topicPrefix: prefix,
      // Its own session, gone when the demo ends: nothing is left behind on a real broker.
      clientId: `demo-consumer-${own}`,
      sessionExpirySeconds: 0,
      store,
      logger: (level, message) => {
        if (level === "warn" || level === "error") print(`consumer   ${level}: ${message}`);
      },
    });
    cleanup.push(() => consumer.close());
    await consumer.ready;
    print(
      `backend    answers ${topics.keysRequest} with 5 keys, signed (Ed25519); consumes ${topics.report} into ${store.where}`,
    );

    // 3. The service: a BillingClient and a Connect server guarded by requireApiKey().
    const billing = new BillingClient({
      ...conn,
      clientId: `demo-service-${own}`,
      topicPrefix: prefix,
      // Key updates must be signed by the backend's key: nobody else decides who gets in.
      keyUpdatePublicKeys: { "demo-backend": signing.publicKey },
      keyUpdateAudience: "demo", // and be for this deployment

      logger: (level, message) => {
        if (level === "debug") return;
        // Aedes speaks MQTT 3.1.1 only: the SDK's switch from 5 is expected here, not a fault.
        const note =
          embedded && message.includes("refused MQTT 5")
            ? " (expected: the embedded Aedes speaks MQTT 3.1.1 only)"
            : "";
        print(`sdk        ${level}: ${message}${note}`);
      },
    });
    cleanup.push(() => billing.close());
    await billing.connect();
    await waitUntil(() => billing.keys.loaded, 10_000, "the key list");
    print(
      `service    connected (MQTT ${billing.stats().protocolVersion === 5 ? "5" : "3.1.1"}); key list loaded: ${billing.stats().keysKnown} keys`,
    );
    const server = await startServer(aiRoutes, [requireApiKey()]);
    cleanup.push(() => server.close());
    print(`service    Connect/gRPC server on ${server.url} with requireApiKey()`);

    // 4. Calls: a good key on each method, a blocked key, no key.
    const connectClient = createClient(
      AiService,
      createConnectTransport({ baseUrl: server.url, httpVersion: "2" }),
    );
    const grpcClient = createClient(AiService, createGrpcTransport({ baseUrl: server.url }));
    const good = { headers: { "api-key": GOOD_KEY } };
    const calls: DemoResult["calls"] = [];
    const attempt = async (name: string, call: () => Promise<unknown>) => {
      try {
        await call();
        calls.push({ call: name, code: "ok" });
      } catch (e) {
        const err = ConnectError.from(e);
        calls.push({ call: name, code: `${Code[err.code]}: ${err.rawMessage}` });
      }
      print(`call       ${name.padEnd(46)} → ${calls.at(-1)?.code}`);
    };
    await attempt("Chat (Connect, good key)", () =>
      connectClient.chat({ prompt: "hello billing world" }, good),
    );
    await attempt("Speak (gRPC, good key via Bearer)", () =>
      grpcClient.speak(
        { text: "你好，世界" },
        { headers: { authorization: `Bearer ${GOOD_KEY}` } },
      ),
    );
    await attempt("Transcribe (gRPC, good key)", () =>
      grpcClient.transcribe({ audio: new Uint8Array(48_000) }, good),
    );
    await attempt("Chat (Connect, blocked key)", () =>
      connectClient.chat({ prompt: "x" }, { headers: { "api-key": BLOCKED_KEY } }),
    );
    await attempt("Chat (gRPC, no key)", () => grpcClient.chat({ prompt: "x" }));
    // One call refused for each rule: expired, a method not allowed, the rate limit, the quota.
    const key = (k: string) => ({ headers: { "api-key": k } });
    await attempt("Chat (Connect, expired key)", () =>
      connectClient.chat({ prompt: "x" }, key(EXPIRED_KEY)),
    );
    await attempt("Chat (gRPC, key for Speak only)", () =>
      grpcClient.chat({ prompt: "x" }, key(TTS_ONLY_KEY)),
    );
    await attempt("Chat (Connect, good key, 4th call this minute)", () =>
      connectClient.chat({ prompt: "x" }, good),
    );
    await attempt("Chat (gRPC, prepaid key, no LLM credit left)", () =>
      grpcClient.chat({ prompt: "x" }, key(PREPAID_KEY)),
    );

    // 5. What the backend stored, read back from the database, and the counters.
    await billing.flush(10_000);
    await waitUntil(() => consumer.stats().handled >= 3, 10_000, "3 usage records stored");
    const { records, rollup } = await readBack(store);
    for (const r of records) print(`stored     ${JSON.stringify(r)}`);
    for (const r of rollup) {
      print(
        `per minute ${r.minute} UTC  ${r.appId}  ${r.module}/${r.model}  usage ${r.usage}  records ${r.records}`,
      );
    }
    const stats = billing.stats();
    print(`counters   ${JSON.stringify(stats)}`);
    return { calls, records, rollup, stats };
  } finally {
    for (const c of cleanup.reverse()) await c().catch(() => {});
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      broker: { type: "string" },
      username: { type: "string" },
      password: { type: "string" },
      ca: { type: "string" },
      prefix: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(
      "usage: npm run demo [-- --broker mqtts://host:8883 --username U --password P --ca ca.pem [--prefix P]]\n" +
        "Against a real broker the demo uses its own random topic prefix unless --prefix is given.",
    );
    process.exit(0);
  }
  runDemo(values).then(
    () => {
      console.log("demo       done");
      process.exit(0);
    },
    (err: unknown) => {
      console.error(`demo failed: ${(err as Error).message}`);
      process.exit(1);
    },
  );
}
