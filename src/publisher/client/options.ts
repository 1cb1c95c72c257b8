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
import { checkSpool, type RecordSpool } from "../record-spool.js";

/**
 * Options of `new BillingClient(options)`: the connection's ({@link MqttConnectionOptions})
 * and these. Every option has a default.
 */
export interface BillingClientOptions extends MqttConnectionOptions {
  /** MQTT client id, also the `producer` of every record. Default: `billing-<hostname>-<random>`. */
  clientId?: string;
  /**
   * How many records may wait for the broker's acknowledgement (queued, in flight or waiting to
   * retry). Past it `reportUsage` rejects with `QUEUE_FULL`, counted in `rejected`. Default: `100_000`.
   */
  maxQueued?: number;
  /**
   * How many encoded bytes those waiting records may hold in memory together: a broker outage
   * then costs at most this much memory. Past it `reportUsage` rejects with `QUEUE_FULL`,
   * counted in `rejected`. Default: `67_108_864` (64 MiB).
   */
  maxQueuedBytes?: number;
  /** How many publishes may await their PUBACK at once (also capped by the broker's receive maximum). Default: `256`. */
  inFlightWindow?: number;
  /** The largest encoded `UsageRecord` accepted (bounds `metadata`). Default: `32_768` bytes. */
  maxRecordBytes?: number;
  /**
   * The most records one MQTT message carries (a `UsageBatch`): the records ready when the window
   * has room go together, up to this many. `1` sends one record per message. Default: `500`.
   */
  maxBatchRecords?: number;
  /**
   * The most bytes of one message's `UsageBatch`, kept within the maximum packet size the broker
   * announces (MQTT 5). At least `maxRecordBytes + 6`. Default: `262_144` (256 KiB).
   */
  maxBatchBytes?: number;
  /**
   * How long a batch that is not full may wait for more records before it is sent: fewer, fuller
   * messages for up to this much latency. While `flush()` or `close()` waits, the records it waits
   * for go at once (also ones put back by a reconnect, or stored by the spool after the call), and
   * a record sent once never lingers again: so `lingerMs` may exceed `closeTimeoutMs`. Default: `0`
   * (records go as soon as the window has room; those of one event-loop turn go together).
   */
  lingerMs?: number;
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
type Connection = keyof MqttConnectionOptions | "clientId";

/** The options with every default filled in. */
export type ResolvedOptions = ResolvedConnectionOptions &
  Required<Omit<BillingClientOptions, Connection | WithoutDefault | "keyUpdatePublicKeys">> & {
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
    maxQueued: o.maxQueued ?? 100_000,
    maxQueuedBytes: o.maxQueuedBytes ?? 64 * 1024 * 1024,
    inFlightWindow: o.inFlightWindow ?? 256,
    maxRecordBytes: o.maxRecordBytes ?? 32_768,
    maxBatchRecords: o.maxBatchRecords ?? 500,
    maxBatchBytes: o.maxBatchBytes ?? 256 * 1024,
    lingerMs: o.lingerMs ?? 0,
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
  positiveInt("maxQueued", resolved.maxQueued, false, Number.MAX_SAFE_INTEGER);
  positiveInt("maxQueuedBytes", resolved.maxQueuedBytes, false, Number.MAX_SAFE_INTEGER);
  positiveInt("inFlightWindow", resolved.inFlightWindow, false, 65535);
  positiveInt("maxRecordBytes", resolved.maxRecordBytes, false, 256 * 1024 * 1024);
  positiveInt("maxBatchRecords", resolved.maxBatchRecords, false, 1_000_000);
  positiveInt("maxBatchBytes", resolved.maxBatchBytes, false, 268_435_455);
  if (resolved.maxBatchBytes < resolved.maxRecordBytes + 6) {
    throw BillingError.invalid(
      "maxBatchBytes",
      `must hold one record of maxRecordBytes (${resolved.maxRecordBytes}) and its 6 bytes of framing`,
    );
  }
  positiveInt("lingerMs", resolved.lingerMs, true, 60_000);
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
