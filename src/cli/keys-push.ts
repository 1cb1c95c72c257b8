import { readFileSync } from "node:fs";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import {
  KeyState,
  type KeyStatus,
  KeyStatusSchema,
  KeyUpdateSchema,
} from "../../gen/billing/v1/usage_pb.js";
import { BillingError } from "../billing-error.js";
import { hashApiKey } from "../common/api-key-hash.js";
import { atMost, withDeadline } from "../common/deadline.js";
import { isSha256Hex } from "../common/sha256-hex.js";
import { connectNegotiated, discard } from "../mqtt/connect-once.js";
import { billingTopics } from "../protocol/topics.js";
import type { CliIo } from "./cli-io.js";
import { type ConnectionValues, cliSettings } from "./connection-flags.js";

export const keysPushHelp = `billing-sdk keys push FILE [--no-retain] [connection flags]

Publishes a KeyUpdate snapshot (the complete key list) on <prefix>/keys/update,
from a JSON file: an array (or {"keys": [...]}) of
  {"key": "raw api key" | "apiKeySha256": "64 hex", "appId": "app",
   "state": "active" | "blocked" | "deleted", "reason": "why blocked"}
Raw keys are hashed (SHA-256) before anything is sent. The snapshot is retained
by the broker (unless --no-retain), so SDKs that connect later get it too: for
tests and small deployments without a billing backend.
Exit codes: 0 pushed, 1 connection or publish failed, 2 bad usage or bad file.`;

const STATES: Record<string, KeyState> = {
  active: KeyState.ACTIVE,
  blocked: KeyState.BLOCKED,
  deleted: KeyState.DELETED,
};

/** Reads and checks a keys file; throws INVALID_ARGUMENT naming the entry. */
export function readKeysFile(path: string): KeyStatus[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw BillingError.invalid("FILE", `cannot read ${path} as JSON: ${(err as Error).message}`);
  }
  const list = Array.isArray(parsed) ? parsed : (parsed as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(list))
    throw BillingError.invalid("FILE", 'must be an array or {"keys": [...]}');
  return list.map((entry: unknown, i) => {
    const e = (entry ?? {}) as Record<string, unknown>;
    const at = `keys[${i}]`;
    let hash: string;
    if (typeof e.key === "string" && e.key !== "") hash = hashApiKey(e.key);
    else if (isSha256Hex(e.apiKeySha256)) {
      hash = e.apiKeySha256;
    } else throw BillingError.invalid(at, 'needs "key" (raw) or "apiKeySha256" (64 lowercase hex)');
    const state = STATES[String(e.state ?? "active")];
    if (state === undefined)
      throw BillingError.invalid(`${at}.state`, "must be active, blocked or deleted");
    return create(KeyStatusSchema, {
      apiKeySha256: hash,
      appId: typeof e.appId === "string" ? e.appId : "",
      state,
      reason: typeof e.reason === "string" ? e.reason : "",
    });
  });
}

/** `billing-sdk keys push FILE`. */
export async function keysPush(
  file: string | undefined,
  v: ConnectionValues & { "no-retain"?: boolean },
  io: CliIo,
): Promise<number> {
  if (file === undefined) {
    io.err(`keys push: FILE is required\n\n${keysPushHelp}`);
    return 2;
  }
  const keys = readKeysFile(file);
  const s = cliSettings(v, "keys");
  const topic = billingTopics(s.topicPrefix).keysUpdate;
  const payload = toBinary(
    KeyUpdateSchema,
    create(KeyUpdateSchema, { keys, snapshot: true, sentAt: timestampNow() }),
  );
  const { client } = await connectNegotiated(s, 5);
  try {
    await withDeadline(
      client.publishAsync(topic, Buffer.from(payload), { qos: 1, retain: !v["no-retain"] }),
      s.connectTimeoutMs,
      "no PUBACK",
    );
    io.out(
      `pushed ${keys.length} keys (snapshot${v["no-retain"] ? "" : ", retained"}) to ${topic}`,
    );
    return 0;
  } catch (err) {
    io.err(`keys push: publish failed: ${(err as Error).message}`);
    return 1;
  } finally {
    // A graceful end waits for PUBACKs a broker that stopped answering never sends: bounded.
    await atMost(client.endAsync(), 1000);
    discard(client);
  }
}
