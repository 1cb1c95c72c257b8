// npm run demo: billing-sdk's main job, end to end, in one process.
//
// By default it starts an embedded MQTT broker (Aedes) with TLS, using a throwaway CA made at
// start-up, and a password. Then it plays the billing backend (pushes a key list with an active
// and a blocked key; consumes billing/report with createUsageConsumer into an embedded PGlite
// database), starts a Connect server guarded by requireApiKey() with an LLM-, a TTS- and an
// ASR-like method that report usage, makes calls with a good key, a blocked key and no key, and
// prints what happened: at the end the records and the per-minute rollup read back from the
// database.
//
//   npm run demo
//   npm run demo -- --broker mqtts://host:8883 --username u --password p --ca ca.pem

import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { connectAsync, type IClientOptions } from "mqtt";
import { KeyState, KeyStatusSchema, KeyUpdateSchema } from "../../gen/billing/v1/usage_pb.js";
import { createUsageConsumer } from "../../src/consumer/index.js";
import {
  BillingClient,
  billingCaller,
  hashApiKey,
  reportUsageFor,
  requireApiKey,
} from "../../src/index.js";
import { createPostgresUsageStore } from "../../src/postgres/index.js";
import { AiService } from "../gen/demo/v1/ai_pb.js";
import { AedesBroker, until } from "../helpers/aedes-broker.js";
import { makePki } from "../helpers/certs.js";
import { startServer } from "../helpers/echo-server.js";

const GOOD_KEY = "demo-key-good-0001";
const BLOCKED_KEY = "demo-key-blocked-0002";

/** A row of billing.usage_records, read back from the database. */
export interface StoredRecord {
  id: string;
  appId: string;
  module: string;
  model: string;
  usage: string;
  occurredAt: string;
  metadata: unknown;
}

/** A row of billing.usage_minutely. */
export interface RollupRow {
  minute: string;
  appId: string;
  module: string;
  model: string;
  usage: string;
  records: number;
}

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
  print?: (line: string) => void;
}

export async function runDemo(options: DemoOptions = {}): Promise<DemoResult> {
  const print = options.print ?? ((line: string) => console.log(line));
  const cleanup: Array<() => Promise<unknown>> = [];
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

    // 2. The billing backend: answers key-list requests with a snapshot; consumes reports into
    // PostgreSQL (an embedded PGlite here) with createUsageConsumer.
    const mqttOpts: IClientOptions = {
      host,
      port,
      protocol: tls ? "mqtts" : "mqtt",
      ...(ca === undefined ? {} : { ca }),
      ...(username === undefined ? {} : { username }),
      ...(password === undefined ? {} : { password }),
    };
    const backend = await connectAsync({
      ...mqttOpts,
      protocolVersion: 4,
      clientId: "demo-backend",
    });
    cleanup.push(() => backend.endAsync());
    const snapshot = toBinary(
      KeyUpdateSchema,
      create(KeyUpdateSchema, {
        snapshot: true,
        sentAt: timestampNow(),
        keys: [
          create(KeyStatusSchema, {
            apiKeySha256: hashApiKey(GOOD_KEY),
            appId: "demo-app",
            state: KeyState.ACTIVE,
          }),
          create(KeyStatusSchema, {
            apiKeySha256: hashApiKey(BLOCKED_KEY),
            appId: "demo-app-2",
            state: KeyState.BLOCKED,
            reason: "unpaid invoice",
          }),
        ],
      }),
    );
    backend.on("message", (topic) => {
      if (topic === "billing/keys/request") {
        backend.publish("billing/keys/update", Buffer.from(snapshot), { qos: 1 });
      }
    });
    await backend.subscribeAsync("billing/keys/request", { qos: 1 });
    const store = await opening;
    const consumer = createUsageConsumer({
      brokerHost: host,
      brokerPort: port,
      tls,
      ca,
      username,
      password,
      // Its own session, gone when the demo ends: nothing is left behind on a real broker.
      clientId: `demo-consumer-${randomBytes(4).toString("hex")}`,
      sessionExpirySeconds: 0,
      store,
      logger: (level, message) => {
        if (level === "warn" || level === "error") print(`consumer   ${level}: ${message}`);
      },
    });
    cleanup.push(() => consumer.close());
    await consumer.ready;
    print(
      `backend    answers billing/keys/request with 2 keys; consumes billing/report into ${store.where}`,
    );

    // 3. The service: a BillingClient and a Connect server guarded by requireApiKey().
    const billing = new BillingClient({
      brokerHost: host,
      brokerPort: port,
      tls,
      ca,
      username,
      password,
      clientId: "demo-service",
      logger: (level, message) => {
        if (level !== "debug") print(`sdk        ${level}: ${message}`);
      },
    });
    cleanup.push(() => billing.close());
    await billing.connect();
    await until(() => billing.keys.loaded, 10_000, "the key list");
    print(
      `service    connected (MQTT ${billing.stats().protocolVersion === 5 ? "5" : "3.1.1"}); key list loaded: ${billing.stats().keysKnown} keys`,
    );
    const server = await startServer(
      (router) =>
        router.service(AiService, {
          async chat(req, ctx) {
            const text = `echo: ${req.prompt}`;
            const tokens = req.prompt.split(/\s+/).length + text.split(/\s+/).length;
            await reportUsageFor(ctx, {
              module: "llm",
              model: "demo-gpt",
              usage: tokens,
              metadata: { prompt_tokens: req.prompt.split(/\s+/).length, temperature: 0.7 },
            });
            return { text, tokens };
          },
          async speak(req, ctx) {
            await reportUsageFor(ctx, {
              module: "tts",
              model: "demo-voice",
              usage: req.text.length, // characters
              metadata: { voice: "alloy", app: ctx.values.get(billingCaller)?.appId ?? "" },
            });
            return { audio: new Uint8Array(req.text.length), characters: req.text.length };
          },
          async transcribe(req, ctx) {
            const seconds = Math.max(1, Math.round(req.audio.length / 16_000));
            await reportUsageFor(ctx, {
              module: "asr",
              model: "demo-whisper",
              usage: seconds,
              metadata: { language: "zh-CN", confidence: 0.95 },
            });
            return { text: "转录的文本内容", seconds };
          },
        }),
      [requireApiKey()],
    );
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
      print(`call       ${name.padEnd(44)} → ${calls.at(-1)?.code}`);
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

    // 5. What the backend stored, read back from the database, and the counters.
    await billing.flush(10_000);
    await until(() => consumer.stats().handled >= 3, 10_000, "3 usage records stored");
    const records = (
      await store.query<Record<string, string>>(
        `SELECT id::text, app_id, module, model, usage::text, to_json(occurred_at) #>> '{}' AS occurred_at, metadata
         FROM billing.usage_records ORDER BY usage_records.occurred_at, id`,
      )
    ).map(
      (r): StoredRecord => ({
        id: r.id as string,
        appId: r.app_id as string,
        module: r.module as string,
        model: r.model as string,
        usage: r.usage as string,
        occurredAt: r.occurred_at as string,
        metadata: r.metadata,
      }),
    );
    for (const r of records) print(`stored     ${JSON.stringify(r)}`);
    const rollup = (
      await store.query<Record<string, string>>(
        `SELECT to_char(minute AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') AS minute, app_id, module,
           model, usage::text, records::int FROM billing.usage_minutely ORDER BY minute, module, model`,
      )
    ).map(
      (r): RollupRow => ({
        minute: r.minute as string,
        appId: r.app_id as string,
        module: r.module as string,
        model: r.model as string,
        usage: r.usage as string,
        records: Number(r.records),
      }),
    );
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
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(
      "usage: npm run demo [-- --broker mqtts://host:8883 --username U --password P --ca ca.pem]",
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
