import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { connectAsync, type MqttClient } from "mqtt";
import { afterAll, afterEach, beforeAll } from "vitest";
import { type UsageRecord, UsageRecordSchema } from "../../gen/billing/v1/usage_pb.js";
import {
  createUsageConsumer,
  type UsageConsumer,
  type UsageConsumerOptions,
} from "../../src/consumer/index.js";
import { hashApiKey } from "../../src/index.js";
import { AedesBroker } from "./aedes-broker.js";
import { makePki, type TestPki } from "./certs.js";

/**
 * createUsageConsumer against an embedded Aedes (TLS, a password; MQTT 3.1.1 only, so the
 * consumer falls back from 5), for one test file. Each test uses its own topic prefix and client
 * id (`nextPrefix()`): persistent sessions of earlier tests never see its messages. Consumers are
 * closed after each test.
 */
export function useConsumerBroker() {
  let pki: TestPki | undefined;
  let broker: AedesBroker | undefined;
  let producer: MqttClient | undefined;
  const open: UsageConsumer[] = [];
  const logs: string[] = [];
  let prefixes = 0;
  beforeAll(async () => {
    pki = makePki();
    broker = await AedesBroker.create({ pki, username: "svc", password: "pw" });
    producer = await connectAsync({
      host: "127.0.0.1",
      port: broker.port,
      protocol: "mqtts",
      ca: pki.ca,
      username: "svc",
      password: "pw",
    });
  });
  afterEach(async () => {
    for (const c of open.splice(0)) await c.close();
    logs.length = 0;
  });
  afterAll(async () => {
    await producer?.endAsync();
    await broker?.close();
  });
  return {
    logs,
    get broker(): AedesBroker {
      return broker as AedesBroker;
    },
    nextPrefix: () => `t${++prefixes}`,
    /** A consumer on `prefix` with fast retries and a captured log (closed after the test). */
    consumer(extra: Partial<UsageConsumerOptions>, prefix: string): UsageConsumer {
      const c = createUsageConsumer({
        brokerHost: "127.0.0.1",
        brokerPort: broker?.port,
        ca: pki?.ca,
        username: "svc",
        password: "pw",
        topicPrefix: prefix,
        clientId: `consumer-${prefix}`,
        reconnectBaseMs: 20,
        reconnectMaxMs: 100,
        logger: (level, msg) => logs.push(`${level}: ${msg}`),
        ...extra,
      } as UsageConsumerOptions);
      open.push(c);
      return c;
    },
    /** Publishes a payload on `<prefix>/report`, as a producer would. */
    publish: (prefix: string, payload: Uint8Array, qos: 0 | 1 = 1) =>
      (producer as MqttClient).publishAsync(`${prefix}/report`, Buffer.from(payload), { qos }),
  };
}

/** A valid UsageRecord (a fresh id each time). */
export function usageRecord(extra: Partial<Omit<UsageRecord, "$typeName">> = {}): UsageRecord {
  return create(UsageRecordSchema, {
    id: randomUUID(),
    apiKeySha256: hashApiKey("key-1"),
    module: "llm",
    model: "gpt-4",
    usage: 7n,
    occurredAt: timestampNow(),
    producer: "svc-1",
    ...extra,
  });
}
