import type { KeyObject } from "node:crypto";
import { BillingError } from "../billing-error.js";
import { defaultClientId } from "../common/client-id.js";
import { type BillingLogger, consoleLogger } from "../common/logger.js";
import { nameProblem } from "../common/text.js";
import type { BrokerSettings } from "../mqtt/broker-settings.js";
import {
  audience,
  checkSpool,
  flag,
  pem,
  port,
  positiveInt,
  publicKeysOf,
} from "./option-checks.js";
import type { RecordSpool } from "./record-spool.js";

/** Options of `new BillingClient(options)`. Every option has a default. */
export interface BillingClientOptions {
  /** The broker's host name or IP address. Default: `"localhost"`. */
  brokerHost?: string;
  /** The broker's port. Default: `8883` with TLS, `1883` with `tls: false`. */
  brokerPort?: number;
  /**
   * More brokers of the same cluster, tried in turn when a connection attempt fails (failover):
   * `[{ host: "mqtt-2.example.com", port: 8883 }]`. Same credentials and TLS settings; `port`
   * defaults to `brokerPort`. Default: none.
   */
  fallbackBrokers?: Array<{ host: string; port?: number | undefined }> | undefined;
  /** MQTT user name. Default: none. */
  username?: string | undefined;
  /** MQTT password. Default: none. Never logged. */
  password?: string | undefined;
  /**
   * TLS to the broker, verified against `ca` or the system's CAs, TLS 1.2 at least. `false`
   * connects in plain text: only for a loopback broker in tests and demos (a warning is logged
   * when a password would cross the network in clear text). Default: `true`.
   */
  tls?: boolean;
  /**
   * CA certificate(s) to verify the broker with, instead of the system's: the PEM **text**
   * (`readFileSync("ca.pem", "utf8")`), not a path. Default: the system CAs.
   */
  ca?: string | Buffer | string[] | Buffer[] | undefined;
  /** Client certificate for mutual TLS, PEM text. Default: none. */
  cert?: string | Buffer | undefined;
  /** Private key of `cert`, PEM text. Default: none. */
  key?: string | Buffer | undefined;
  /** The name the broker's certificate must carry (and SNI). Default: `brokerHost`. */
  servername?: string | undefined;
  /**
   * Accept any broker certificate: anyone on the path can then read and forge billing traffic.
   * Logs a warning at construction. Never for production. Default: `false`.
   */
  dangerouslyDisableTlsVerification?: boolean;
  /** MQTT client id, also the `producer` of every record. Default: `billing-<hostname>-<random>`. */
  clientId?: string;
  /** The prefix of every topic. Default: `"billing"`. */
  topicPrefix?: string;
  /**
   * MQTT version to try first: `5`, or `4` (3.1.1). With 5, a broker that refuses version 5
   * (Aedes, old brokers) is retried at once with 3.1.1, which is then kept. Default: `5`.
   */
  protocolVersion?: 4 | 5;
  /** MQTT keepalive in seconds. Default: `30`. */
  keepaliveSeconds?: number;
  /** How long one connection attempt (TCP + TLS + CONNACK) may take. Default: `10_000` ms. */
  connectTimeoutMs?: number;
  /** First delay before reconnecting; doubles each failed attempt, with jitter. Default: `500` ms. */
  reconnectBaseMs?: number;
  /** The most the reconnect (and publish-retry) delay grows to. Default: `30_000` ms. */
  reconnectMaxMs?: number;
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
  /** Where log lines go. Default: info, warnings and errors to `console.error` (debug dropped). */
  logger?: BillingLogger;
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
   * The deployment this client takes key updates for: an update is applied only when its signed
   * `audience` is this (counted as `wrongAudience` otherwise), so one signing key can serve
   * staging and production without an update for one applying in the other. 1..128 characters.
   * Default: `topicPrefix` (a warning is logged when key updates are verified and it is left
   * unset, as deployments often share the prefix).
   */
  keyUpdateAudience?: string | undefined;
  /**
   * Also accept key updates that name no audience (from a backend that does not set it yet).
   * Updates that name another audience are still refused. Default: `false`.
   */
  acceptUnboundKeyUpdates?: boolean;
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

/** One broker to try: `brokerHost:brokerPort` first, then `fallbackBrokers`. */
export type BrokerAddress = { host: string; port: number };

type WithoutDefault =
  | "username"
  | "password"
  | "ca"
  | "cert"
  | "key"
  | "servername"
  | "spool"
  | "maxKeyListAgeMs"
  | "keyUpdateAudience";
type Reshaped = "fallbackBrokers" | "keyUpdatePublicKeys";

/** The options with every default filled in. */
export type ResolvedOptions = Required<Omit<BillingClientOptions, WithoutDefault | Reshaped>> & {
  [K in WithoutDefault]: BillingClientOptions[K] | undefined;
} & { fallbackBrokers: BrokerAddress[]; keyUpdatePublicKeys: Map<string, KeyObject> };

/** The largest `maxKeyUpdateBytes` (an MQTT packet is at most 268,435,455 bytes plus headers). */
const MAX_KEY_UPDATE_BYTES = 268_000_000;

/** Fills the defaults and checks every option: the one place defaults live. */
export function resolveOptions(o: BillingClientOptions): ResolvedOptions {
  if (typeof o !== "object" || o === null)
    throw BillingError.invalid("options", "must be an object");
  const tls = o.tls ?? true;
  const maxKeys = o.maxKeys ?? 1_000_000;
  const resolved: ResolvedOptions = {
    brokerHost: o.brokerHost ?? "localhost",
    brokerPort: o.brokerPort ?? (tls ? 8883 : 1883),
    fallbackBrokers: [],
    username: o.username,
    password: o.password,
    tls,
    ca: o.ca,
    cert: o.cert,
    key: o.key,
    servername: o.servername,
    dangerouslyDisableTlsVerification: o.dangerouslyDisableTlsVerification ?? false,
    clientId: o.clientId ?? defaultClientId("billing"),
    topicPrefix: o.topicPrefix ?? "billing",
    protocolVersion: o.protocolVersion ?? 5,
    keepaliveSeconds: o.keepaliveSeconds ?? 30,
    connectTimeoutMs: o.connectTimeoutMs ?? 10_000,
    reconnectBaseMs: o.reconnectBaseMs ?? 500,
    reconnectMaxMs: o.reconnectMaxMs ?? 30_000,
    maxQueued: o.maxQueued ?? 100_000,
    maxQueuedBytes: o.maxQueuedBytes ?? 64 * 1024 * 1024,
    inFlightWindow: o.inFlightWindow ?? 256,
    maxRecordBytes: o.maxRecordBytes ?? 32_768,
    maxBatchRecords: o.maxBatchRecords ?? 500,
    maxBatchBytes: o.maxBatchBytes ?? 256 * 1024,
    lingerMs: o.lingerMs ?? 0,
    heartbeatIntervalMs: o.heartbeatIntervalMs ?? 10_000,
    closeTimeoutMs: o.closeTimeoutMs ?? 10_000,
    logger: o.logger ?? consoleLogger,
    spool: o.spool,
    keyUpdatePublicKeys: publicKeysOf(o.keyUpdatePublicKeys),
    insecureAcceptUnsignedKeyUpdates: o.insecureAcceptUnsignedKeyUpdates ?? false,
    keyUpdateAudience: o.keyUpdateAudience,
    acceptUnboundKeyUpdates: o.acceptUnboundKeyUpdates ?? false,
    maxKeys,
    maxKeyUpdateBytes:
      o.maxKeyUpdateBytes ??
      (Number.isSafeInteger(maxKeys) ? Math.min(maxKeys * 128, MAX_KEY_UPDATE_BYTES) : 0),
    maxKeyListAgeMs: o.maxKeyListAgeMs,
  };
  if (typeof resolved.brokerHost !== "string" || resolved.brokerHost === "") {
    throw BillingError.invalid("brokerHost", "must be a non-empty string");
  }
  port("brokerPort", resolved.brokerPort);
  for (const [i, b] of (o.fallbackBrokers ?? []).entries()) {
    if (typeof b?.host !== "string" || b.host === "") {
      throw BillingError.invalid(`fallbackBrokers[${i}]`, "must be { host, port? }");
    }
    resolved.fallbackBrokers.push({
      host: b.host,
      port: port(`fallbackBrokers[${i}].port`, b.port ?? resolved.brokerPort),
    });
  }
  if (resolved.protocolVersion !== 4 && resolved.protocolVersion !== 5) {
    throw BillingError.invalid("protocolVersion", "must be 4 (3.1.1) or 5");
  }
  if (
    typeof resolved.clientId !== "string" ||
    resolved.clientId === "" ||
    resolved.clientId.length > 128 ||
    nameProblem(resolved.clientId) !== undefined
  ) {
    throw BillingError.invalid("clientId", "must be 1..128 characters, without control characters");
  }
  const levels = resolved.topicPrefix.split("/");
  if (levels.some((l) => l === "" || /[#+]/.test(l) || l.includes("\0"))) {
    throw BillingError.invalid("topicPrefix", "must be topic levels without wildcards");
  }
  positiveInt("keepaliveSeconds", resolved.keepaliveSeconds, true, 65535);
  positiveInt("connectTimeoutMs", resolved.connectTimeoutMs);
  positiveInt("reconnectBaseMs", resolved.reconnectBaseMs);
  positiveInt("reconnectMaxMs", resolved.reconnectMaxMs);
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
  if (resolved.keyUpdateAudience !== undefined) audience(resolved.keyUpdateAudience);
  flag("acceptUnboundKeyUpdates", resolved.acceptUnboundKeyUpdates);
  pem("ca", resolved.ca);
  pem("cert", resolved.cert);
  pem("key", resolved.key);
  if ((resolved.cert === undefined) !== (resolved.key === undefined)) {
    throw BillingError.invalid("cert", "cert and key go together (mutual TLS)");
  }
  return resolved;
}

/** The connection settings of `o` for the broker `b` (the primary one by default). */
export function brokerSettings(o: ResolvedOptions, b?: BrokerAddress): BrokerSettings {
  return { ...o, brokerHost: b?.host ?? o.brokerHost, brokerPort: b?.port ?? o.brokerPort };
}

/**
 * The MQTT 5 maximum packet size the client announces: a key update of `maxKeyUpdateBytes` plus
 * room for the fixed header, topic and properties.
 */
export function maximumPacketSize(o: ResolvedOptions): number {
  return o.maxKeyUpdateBytes + 4096;
}

/** Every broker to try, in order: `brokerHost:brokerPort` first, then `fallbackBrokers`. */
export function brokerList(o: ResolvedOptions): BrokerAddress[] {
  return [{ host: o.brokerHost, port: o.brokerPort }, ...o.fallbackBrokers];
}
