import { readFileSync } from "node:fs";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import {
  KeyState,
  type KeyStatus,
  KeyStatusSchema,
  KeyUpdateSchema,
  SignedKeyUpdateSchema,
} from "../../gen/billing/v1/usage_pb.js";
import { BillingError } from "../billing-error.js";
import { hashApiKey, MAX_API_KEY_LENGTH } from "../common/api-key-hash.js";
import { atMost, withDeadline } from "../common/deadline.js";
import { isSha256Hex } from "../common/sha256-hex.js";
import { unmatchableApiKeyProblem } from "../interceptor/unmatchable-api-key.js";
import { publicKeyFingerprint } from "../keys/key-fingerprint.js";
import { ed25519PrivateKey, signerProblem, signKeyUpdate } from "../keys/signed-key-update.js";
import { connectNegotiated, discard } from "../mqtt/connect-once.js";
import { billingTopics } from "../protocol/topics.js";
import type { CliIo } from "./cli-io.js";
import { type ConnectionValues, cliSettings } from "./connection-flags.js";
import { keyRulesOfJson } from "./key-rules-json.js";

export const keysPushHelp = `billing-sdk keys push FILE --signing-key PRIVATE.pem --signer NAME
                      [--audience NAME] [--version N] [--retain] [--insecure-unsigned]
                      [connection flags]

Publishes a KeyUpdate snapshot (the complete key list), signed with Ed25519, as a
SignedKeyUpdate on <prefix>/keys/update, from a JSON file: an array (or
{"keys": [...]}) of
  {"key": "raw api key" | "apiKeySha256": "64 hex", "appId": "app",
   "state": "active" | "blocked" | "deleted", "reason": "why blocked",
   "expiresAt": "2030-01-01T00:00:00Z" (or ms since the epoch),
   "allowedMethods": ["pkg.Service/Method", "pkg.Service/*"],
   "rateLimits": [{"limit": 10, "windowSeconds": 1, "module": ""}],
   "quotas": [{"module": "llm", "remaining": 100000}]}
(the last four optional: no expiry, all methods, no limits, no quotas; a rate
limit with a module counts that module's usage, without one requests).
Raw keys are hashed (SHA-256) before anything is sent. A raw key no request can
carry (a comma, a control character other than a tab, a character above U+00FF,
leading or trailing whitespace) is refused, naming the entry, never the key.
  --signing-key FILE  the Ed25519 private key (PEM; see billing-sdk keys keygen)
  --signer NAME       the name the services know its public key by
                      (keyUpdatePublicKeys: { NAME: publicKeyPem }); what was pushed
                      prints the public key's fingerprint, as keys keygen did
  --audience NAME     the deployment the update is for, signed with it: services
                      refuse an update whose audience differs from their
                      keyUpdateAudience (default: the topic prefix, as theirs)
  --version N         the list's version; clients ignore an update whose version is
                      not greater than the last they applied (default: now in ms)
  --retain            ask the broker to retain it, for SDKs that connect later when no
                      backend answers their key-list requests. Off by default: a
                      retained snapshot comes back at every reconnect, and once a newer
                      list exists it is refused there as a replay. With --retain, set
                      maxKeyListAgeMs on every service and push again within it: anyone
                      with a broker password can re-retain an older signed snapshot
  --insecure-unsigned publish without a signature (only clients with
                      insecureAcceptUnsignedKeyUpdates accept it)
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
    if (typeof e.key === "string" && e.key !== "") {
      if (e.key.length > MAX_API_KEY_LENGTH) {
        throw BillingError.invalid(`${at}.key`, `must be at most ${MAX_API_KEY_LENGTH} characters`);
      }
      const problem = unmatchableApiKeyProblem(e.key);
      if (problem !== undefined) throw BillingError.invalid(`${at}.key`, problem);
      hash = hashApiKey(e.key);
    } else if (isSha256Hex(e.apiKeySha256)) {
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
      ...keyRulesOfJson(e, at),
    });
  });
}

function version(value: string | undefined): bigint {
  if (value === undefined) return BigInt(Date.now());
  if (!/^[0-9]{1,20}$/.test(value) || BigInt(value) < 1n || BigInt(value) >= 2n ** 64n) {
    throw BillingError.invalid("--version", "must be an integer in 1..2^64-1");
  }
  return BigInt(value);
}

/** `--audience`, or the topic prefix: a name of 1..128 characters (as a signer's). */
function audienceOf(value: string | undefined, prefix: string): string {
  const audience = value ?? prefix;
  const problem = signerProblem(audience);
  if (problem !== undefined) throw BillingError.invalid("--audience", problem);
  return audience;
}

export interface KeysPushValues extends ConnectionValues {
  "signing-key"?: string | undefined;
  signer?: string | undefined;
  audience?: string | undefined;
  version?: string | undefined;
  retain?: boolean | undefined;
  "insecure-unsigned"?: boolean | undefined;
}

/** What `keys push` publishes, and the fingerprint of the public key that checks it. */
interface Payload {
  bytes: Uint8Array;
  version: bigint;
  /** Undefined when unsigned. */
  fingerprint: string | undefined;
}

/** The SignedKeyUpdate payload `keys push` publishes. */
function payloadOf(keys: KeyStatus[], v: KeysPushValues, audience: string): Payload {
  const update = create(KeyUpdateSchema, {
    keys,
    snapshot: true,
    sentAt: timestampNow(),
    version: version(v.version),
    audience,
  });
  if (v["insecure-unsigned"]) {
    if (v["signing-key"] !== undefined) {
      throw BillingError.invalid("--insecure-unsigned", "goes without --signing-key");
    }
    const keyUpdate = toBinary(KeyUpdateSchema, update);
    const bytes = toBinary(SignedKeyUpdateSchema, create(SignedKeyUpdateSchema, { keyUpdate }));
    return { bytes, version: update.version, fingerprint: undefined };
  }
  const file = v["signing-key"];
  if (file === undefined || v.signer === undefined) {
    throw BillingError.invalid(
      "--signing-key",
      "key updates are signed: give --signing-key PRIVATE.pem and --signer NAME (make a key pair with billing-sdk keys keygen), or --insecure-unsigned",
    );
  }
  let pem: string;
  try {
    pem = readFileSync(file, "utf8");
  } catch (err) {
    throw BillingError.invalid("--signing-key", `cannot read ${file}: ${(err as Error).message}`);
  }
  const key = ed25519PrivateKey("--signing-key", pem);
  const bytes = signKeyUpdate(update, key, v.signer);
  return { bytes, version: update.version, fingerprint: publicKeyFingerprint(key) };
}

/** `billing-sdk keys push FILE`. */
export async function keysPush(
  file: string | undefined,
  v: KeysPushValues,
  io: CliIo,
): Promise<number> {
  if (file === undefined) {
    io.err(`keys push: FILE is required\n\n${keysPushHelp}`);
    return 2;
  }
  const keys = readKeysFile(file);
  const s = cliSettings(v, "keys");
  const audience = audienceOf(v.audience, s.topicPrefix);
  const payload = payloadOf(keys, v, audience);
  const topic = billingTopics(s.topicPrefix).keysUpdate;
  const { client } = await connectNegotiated(s, 5);
  try {
    await withDeadline(
      client.publishAsync(topic, Buffer.from(payload.bytes), {
        qos: 1,
        retain: v.retain === true,
      }),
      s.connectTimeoutMs,
      "no PUBACK",
    );
    const how = [
      `version ${payload.version}`,
      `audience ${JSON.stringify(audience)}`,
      v["insecure-unsigned"] ? "UNSIGNED" : `signed by ${v.signer}`,
    ];
    if (v.retain) how.push("retained");
    io.out(`pushed ${keys.length} keys (snapshot, ${how.join(", ")}) to ${topic}`);
    if (payload.fingerprint !== undefined) {
      // A wrong --signing-key still publishes: what services pin must have this fingerprint.
      io.out(
        `signer ${v.signer}: public key ${payload.fingerprint} (services apply it only if keyUpdatePublicKeys[${JSON.stringify(v.signer)}] is that key: billing-sdk keys keygen printed its fingerprint)`,
      );
    }
    if (v.retain) {
      io.err(
        "keys push: a retained snapshot can be re-retained by anyone with a broker password: set maxKeyListAgeMs on every service and push again within it (docs/key-sync.md: Retained snapshots)",
      );
    }
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
