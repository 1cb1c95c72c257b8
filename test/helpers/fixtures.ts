import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs, timestampNow } from "@bufbuild/protobuf/wkt";
import { connectAsync, type MqttClient } from "mqtt";
import {
  type KeyState,
  KeyStatusSchema,
  type KeyUpdate,
  KeyUpdateSchema,
  SignedKeyUpdateSchema,
  type UsageRecord,
  UsageRecordSchema,
} from "../../gen/billing/v1/usage_pb.js";
import { hashApiKey } from "../../src/common/api-key-hash.js";
import { type BillingClientOptions, signKeyUpdate } from "../../src/index.js";
import { decodeUsageBatch, usageBatchBytes } from "../../src/protocol/usage-batch.js";

/** The billing backend's signing key pair in tests: made once per test file. */
export const testSigner: { name: string; publicKey: KeyObject; privateKey: KeyObject } = {
  name: "test-backend",
  ...generateKeyPairSync("ed25519"),
};

/** `keyUpdatePublicKeys` that trust `testSigner`. */
export const testPublicKeys = { [testSigner.name]: testSigner.publicKey };

// Versions increase across every update a test file makes, as a backend's would.
let lastVersion = BigInt(Date.now()) * 1000n;
/** The next key-list version (greater than every earlier one in this test file). */
export const nextVersion = () => ++lastVersion;

export type KeyEntry = {
  key: string;
  state: KeyState;
  appId?: string;
  reason?: string;
  /** Issue 14's rules: expiry (ms since the epoch), allowed methods, rate limits, quotas. */
  expiresAtMs?: number;
  allowedMethods?: string[];
  rateLimits?: { limit: number; windowSeconds: number; module?: string }[];
  quotas?: { module: string; remaining: number }[];
};

/**
 * The audience test updates are for: `"billing"`, the default `keyUpdateAudience` of a client
 * with the default topic prefix.
 */
export const TEST_AUDIENCE = "billing";

/**
 * A KeyUpdate message (version: the next one, sent now, for `TEST_AUDIENCE`, unless given; an
 * `audience` of "" binds it to no deployment).
 */
export function keyUpdateMessage(
  keys: KeyEntry[],
  snapshot: boolean,
  init: { version?: bigint; sentAtMs?: number; audience?: string } = {},
): KeyUpdate {
  return create(KeyUpdateSchema, {
    snapshot,
    audience: init.audience ?? TEST_AUDIENCE,
    version: init.version ?? nextVersion(),
    sentAt:
      init.sentAtMs === undefined
        ? timestampNow()
        : {
            seconds: BigInt(Math.floor(init.sentAtMs / 1000)),
            nanos: (init.sentAtMs % 1000) * 1e6,
          },
    keys: keys.map((k) =>
      create(KeyStatusSchema, {
        apiKeySha256: hashApiKey(k.key),
        state: k.state,
        appId: k.appId ?? "",
        reason: k.reason ?? "",
        expiresAt: k.expiresAtMs === undefined ? undefined : timestampFromMs(k.expiresAtMs),
        allowedMethods: k.allowedMethods ?? [],
        rateLimits: (k.rateLimits ?? []).map((r) => ({
          limit: BigInt(r.limit),
          windowSeconds: r.windowSeconds,
          module: r.module ?? "",
        })),
        quotas: (k.quotas ?? []).map((q) => ({ module: q.module, remaining: BigInt(q.remaining) })),
      }),
    ),
  });
}

/** A SignedKeyUpdate payload as the billing backend publishes it, signed by `testSigner`. */
export function keyUpdate(
  keys: KeyEntry[],
  snapshot: boolean,
  init: { version?: bigint; sentAtMs?: number; audience?: string } = {},
): Uint8Array {
  return signKeyUpdate(
    keyUpdateMessage(keys, snapshot, init),
    testSigner.privateKey,
    testSigner.name,
  );
}

/** A SignedKeyUpdate without a signature (what an attacker without the key can make). */
export function unsignedKeyUpdate(update: KeyUpdate, signer = ""): Uint8Array {
  const keyUpdate = toBinary(KeyUpdateSchema, update);
  return toBinary(SignedKeyUpdateSchema, create(SignedKeyUpdateSchema, { keyUpdate, signer }));
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
    keyUpdatePublicKeys: testPublicKeys,
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

/** A client of the plain (no TLS) embedded broker on `port`: quick to reconnect, no heartbeat, quiet. */
export function plainClientOptions(
  port: number,
  extra: BillingClientOptions = {},
): BillingClientOptions {
  return {
    brokerHost: "127.0.0.1",
    brokerPort: port,
    tls: false,
    reconnectBaseMs: 50,
    reconnectMaxMs: 200,
    heartbeatIntervalMs: 0,
    logger: quiet,
    ...extra,
  };
}
