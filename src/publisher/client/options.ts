import type { KeyObject } from "node:crypto";
import { BillingError } from "../../billing-error.js";
import { defaultClientId } from "../../common/client-id.js";
import { positiveInt } from "../../common/option-checks.js";
import { publicKeysOf } from "../../keys/signed-key-update.js";
import {
  type MqttConnectionOptions,
  type ResolvedConnectionOptions,
  resolveConnectionOptions,
} from "../../mqtt/index.js";
import {
  type BatchOptions,
  type QueueOptions,
  type ResolvedPipelineOptions,
  resolvePipelineOptions,
} from "../pipeline/pipeline-options.js";
import { checkSpool, type RecordSpool } from "../record-spool.js";

/**
 * Options of `new BillingClient(options)`: one flat object, made of the options each part owns
 * (the connection's {@link MqttConnectionOptions}, the queue's {@link QueueOptions}, the send
 * pipeline's {@link BatchOptions}) and these. Every option has a default.
 */
export interface BillingClientOptions extends MqttConnectionOptions, QueueOptions, BatchOptions {
  /** MQTT client id, also the `producer` of every record. Default: `billing-<hostname>-<random>`. */
  clientId?: string;
  /** How often a `Heartbeat` is published; `0` disables it. Default: `10_000` ms. */
  heartbeatIntervalMs?: number;
  /** How long `close()` waits for queued records to be acknowledged. Default: `10_000` ms. */
  closeTimeoutMs?: number;
  /**
   * A durable outbox that keeps accepted records until the broker acknowledges them, so they
   * survive a crash, an outage and a restart: `new SqliteSpool({ path: "./billing-spool.db" })`
   * from `billing-sdk/spool` (needs the optional peer dependency better-sqlite3 12), or your own
   * `RecordSpool`. `reportUsage` then resolves once the record is stored. Default: none (memory).
   */
  spool?: RecordSpool | undefined;
  /**
   * The Ed25519 public keys that may sign key updates, by signer name: PEM text
   * (`readFileSync("key-update-public.pem", "utf8")`) or a `KeyObject`. Several names allow key
   * rotation. A key update must be signed by one of them (see `signKeyUpdate`): with none
   * configured, the key list never loads and `requireApiKey()` answers `Unavailable` (logged once
   * when an update arrives). Default: none.
   */
  keyUpdatePublicKeys?: Record<string, string | KeyObject> | undefined;
  /**
   * Also accept key updates that carry no signature: anyone who may publish on
   * `<prefix>/keys/update` then decides which API keys pass. Signed updates are still verified.
   * Logs a warning at construction. For tests and demos only. Default: `false`.
   */
  insecureAcceptUnsignedKeyUpdates?: boolean;
  /**
   * The most keys the key list may hold: a snapshot with more, or a delta that would grow the list
   * past it, is refused (counted as `tooLarge`) and the list stays as it was. Default: `1_000_000`.
   */
  maxKeys?: number;
  /**
   * The largest key update accepted, in bytes. With MQTT 5 it is sent to the broker as the
   * connection's maximum packet size (plus room for the topic and headers), so the broker never
   * delivers a larger message to this client; with MQTT 3.1.1 a larger one is refused when it
   * arrives (counted as `tooLarge`). Default: `maxKeys * 128` (128,000,000 with the default
   * `maxKeys`: room for a full snapshot), at most 268,000,000.
   */
  maxKeyUpdateBytes?: number;
  /**
   * The staleness bound: the interceptor decides on the key list only while its last snapshot (or
   * contiguous delta) was sent at most this long ago, by its signed `sentAt` (never later than its
   * arrival); after that it answers `Unavailable` until a fresh update arrives. The backend must
   * re-send a snapshot well within it (e.g. every third of it). Default: none (no bound).
   */
  maxKeyListAgeMs?: number | undefined;
}

type WithoutDefault = "spool" | "maxKeyListAgeMs";
type OwnedElsewhere = keyof MqttConnectionOptions | keyof QueueOptions | keyof BatchOptions;

/** The options with every default filled in. */
export type ResolvedOptions = ResolvedConnectionOptions &
  ResolvedPipelineOptions &
  Required<
    Omit<BillingClientOptions, OwnedElsewhere | "clientId" | WithoutDefault | "keyUpdatePublicKeys">
  > & {
    [K in WithoutDefault]: BillingClientOptions[K] | undefined;
  } & { keyUpdatePublicKeys: Map<string, KeyObject> };

/** The largest `maxKeyUpdateBytes` (an MQTT packet is at most 268,435,455 bytes plus headers). */
const MAX_KEY_UPDATE_BYTES = 268_000_000;

/**
 * Fills the defaults and checks every option (the connection's in `resolveConnectionOptions`):
 * the one place defaults live.
 */
export function resolveOptions(o: BillingClientOptions): ResolvedOptions {
  if (typeof o !== "object" || o === null)
    throw BillingError.invalid("options", "must be an object");
  const maxKeys = o.maxKeys ?? 1_000_000;
  const resolved: ResolvedOptions = {
    ...resolveConnectionOptions(o, o.clientId ?? defaultClientId("billing")),
    ...resolvePipelineOptions(o),
    heartbeatIntervalMs: o.heartbeatIntervalMs ?? 10_000,
    closeTimeoutMs: o.closeTimeoutMs ?? 10_000,
    spool: o.spool,
    keyUpdatePublicKeys: publicKeysOf(o.keyUpdatePublicKeys),
    insecureAcceptUnsignedKeyUpdates: o.insecureAcceptUnsignedKeyUpdates ?? false,
    maxKeys,
    maxKeyUpdateBytes:
      o.maxKeyUpdateBytes ??
      (Number.isSafeInteger(maxKeys) ? Math.min(maxKeys * 128, MAX_KEY_UPDATE_BYTES) : 0),
    maxKeyListAgeMs: o.maxKeyListAgeMs,
  };
  positiveInt("heartbeatIntervalMs", resolved.heartbeatIntervalMs, true);
  positiveInt("closeTimeoutMs", resolved.closeTimeoutMs, true);
  checkSpool(resolved.spool);
  positiveInt("maxKeys", resolved.maxKeys, false, Number.MAX_SAFE_INTEGER);
  positiveInt("maxKeyUpdateBytes", resolved.maxKeyUpdateBytes, false, MAX_KEY_UPDATE_BYTES);
  if (resolved.maxKeyListAgeMs !== undefined) {
    positiveInt("maxKeyListAgeMs", resolved.maxKeyListAgeMs);
  }
  return resolved;
}

/**
 * The MQTT 5 maximum packet size the client announces: a key update of `maxKeyUpdateBytes` plus
 * room for the fixed header, topic and properties.
 */
export function maximumPacketSize(o: ResolvedOptions): number {
  return o.maxKeyUpdateBytes + 4096;
}
