import { create, toBinary } from "@bufbuild/protobuf";
import { connectAsync, type MqttClient } from "mqtt";
import {
  type KeyState,
  KeyStatusSchema,
  KeyUpdateSchema,
  type UsageRecord,
  UsageRecordSchema,
} from "../../gen/billing/v1/usage_pb.js";
import { hashApiKey } from "../../src/common/api-key-hash.js";
import type { BillingClientOptions } from "../../src/index.js";
import { decodeUsageBatch, usageBatchBytes } from "../../src/protocol/usage-batch.js";

/** A KeyUpdate payload as the billing backend would publish it. */
export function keyUpdate(
  keys: Array<{ key: string; state: KeyState; appId?: string; reason?: string }>,
  snapshot: boolean,
): Uint8Array {
  return toBinary(
    KeyUpdateSchema,
    create(KeyUpdateSchema, {
      snapshot,
      keys: keys.map((k) =>
        create(KeyStatusSchema, {
          apiKeySha256: hashApiKey(k.key),
          state: k.state,
          appId: k.appId ?? "",
          reason: k.reason ?? "",
        }),
      ),
    }),
  );
}

/** The records of messages on `<prefix>/report` (each a `UsageBatch`), in order. */
export function decodeRecords(payloads: Buffer[]): UsageRecord[] {
  return payloads.flatMap((p) => decodeUsageBatch(p));
}

/** A `UsageBatch` payload of these records, as a producer would publish it. */
export function batchPayload(...records: UsageRecord[]): Buffer {
  return Buffer.from(usageBatchBytes(records.map((r) => toBinary(UsageRecordSchema, r))));
}

/** A logger that drops everything (one function, so equal options stay equal). */
export const quiet = () => {};

/** BillingClient options for a loopback test broker over TLS: fast retries, no heartbeats. */
export function tlsClientOptions(
  port: number,
  ca: string,
  username: string,
  password: string,
  extra: BillingClientOptions = {},
): BillingClientOptions {
  return {
    brokerHost: "127.0.0.1",
    brokerPort: port,
    ca,
    username,
    password,
    heartbeatIntervalMs: 0,
    reconnectBaseMs: 50,
    reconnectMaxMs: 500,
    logger: quiet,
    ...extra,
  };
}

/**
 * The billing backend's subscriber on a test broker's plain listener: MQTT 5 with a persistent
 * session, so what the broker acknowledged while the backend was cut off is still delivered.
 */
export async function durableBackend(
  port: number,
  clientId: string,
  password: string,
  onRecord: (record: UsageRecord) => void,
): Promise<MqttClient> {
  const backend = await connectAsync({
    host: "127.0.0.1",
    port,
    protocolVersion: 5,
    username: "backend",
    password,
    clientId,
    clean: false,
    properties: { sessionExpiryInterval: 600 },
    reconnectPeriod: 100,
  });
  backend.on("message", (_topic, payload) => {
    for (const r of decodeRecords([payload])) onRecord(r);
  });
  await backend.subscribeAsync("billing/report", { qos: 1 });
  return backend;
}
