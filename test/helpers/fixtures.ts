import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  type KeyState,
  KeyStatusSchema,
  KeyUpdateSchema,
  type UsageRecord,
  UsageRecordSchema,
} from "../../gen/billing/v1/usage_pb.js";
import { hashApiKey } from "../../src/api-key-hash.js";
import type { BillingClientOptions } from "../../src/index.js";

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

export function decodeRecords(payloads: Buffer[]): UsageRecord[] {
  return payloads.map((p) => fromBinary(UsageRecordSchema, p));
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
