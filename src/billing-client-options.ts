import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { BillingError } from "./billing-error.js";
import { type BillingLogger, consoleLogger } from "./logger.js";
import type { RecordSpool } from "./record-spool.js";
import type { SqliteSpoolOptions } from "./sqlite-spool.js";

/** Options of `new BillingClient(options)`. Every option has a default but the broker's address. */
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
   * TLS to the broker, verified against `ca` or the system's CAs, TLS 1.2 at least.
   * `false` connects in plain text: only for a loopback broker in tests and demos. Default: `true`.
   */
  tls?: boolean;
  /** PEM CA certificate(s) to verify the broker with, instead of the system's. Default: system CAs. */
  ca?: string | Buffer | string[] | Buffer[] | undefined;
  /** PEM client certificate for mutual TLS. Default: none. */
  cert?: string | Buffer | undefined;
  /** PEM private key of `cert`. Default: none. */
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
  /** How many publishes may await their PUBACK at once (also capped by the broker's receive maximum). Default: `256`. */
  inFlightWindow?: number;
  /** The largest encoded `UsageRecord` accepted (bounds `metadata`). Default: `32_768` bytes. */
  maxRecordBytes?: number;
  /** How often a `Heartbeat` is published; `0` disables it. Default: `10_000` ms. */
  heartbeatIntervalMs?: number;
  /** How long `close()` waits for queued records to be acknowledged. Default: `10_000` ms. */
  closeTimeoutMs?: number;
  /** Where log lines go. Default: warnings and errors to `console.error`. */
  logger?: BillingLogger;
  /**
   * Keep accepted records in a durable outbox until the broker acknowledges them, so they
   * survive a crash, an outage and a restart: `{ path: "./billing-spool.db" }` for SQLite
   * (needs the optional peer dependency better-sqlite3 12), or your own `RecordSpool`.
   * `reportUsage` then resolves once the record is stored. Default: none (in memory only).
   */
  spool?: SqliteSpoolOptions | RecordSpool | undefined;
}

/** The options with every default filled in. */
type WithoutDefault = "username" | "password" | "ca" | "cert" | "key" | "servername" | "spool";
/** Every broker to try, in order: `brokerHost:brokerPort` first, then `fallbackBrokers`. */
export type BrokerAddress = { host: string; port: number };
export type ResolvedOptions = Required<
  Omit<BillingClientOptions, WithoutDefault | "fallbackBrokers">
> & {
  [K in WithoutDefault]: BillingClientOptions[K] | undefined;
} & { fallbackBrokers: BrokerAddress[] };

function positiveInt(name: string, value: number, allowZero = false): number {
  if (!Number.isSafeInteger(value) || value < 0 || (value === 0 && !allowZero)) {
    throw BillingError.invalid(
      name,
      `must be a ${allowZero ? "non-negative" : "positive"} integer`,
    );
  }
  return value;
}

/** Fills the defaults and checks every option: the one place defaults live. */
export function resolveOptions(o: BillingClientOptions): ResolvedOptions {
  const tls = o.tls ?? true;
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
    clientId: o.clientId ?? `billing-${hostname()}-${randomBytes(4).toString("hex")}`,
    topicPrefix: o.topicPrefix ?? "billing",
    protocolVersion: o.protocolVersion ?? 5,
    keepaliveSeconds: o.keepaliveSeconds ?? 30,
    connectTimeoutMs: o.connectTimeoutMs ?? 10_000,
    reconnectBaseMs: o.reconnectBaseMs ?? 500,
    reconnectMaxMs: o.reconnectMaxMs ?? 30_000,
    maxQueued: o.maxQueued ?? 100_000,
    inFlightWindow: o.inFlightWindow ?? 256,
    maxRecordBytes: o.maxRecordBytes ?? 32_768,
    heartbeatIntervalMs: o.heartbeatIntervalMs ?? 10_000,
    closeTimeoutMs: o.closeTimeoutMs ?? 10_000,
    logger: o.logger ?? consoleLogger,
    spool: o.spool,
  };
  if (typeof resolved.brokerHost !== "string" || resolved.brokerHost === "") {
    throw BillingError.invalid("brokerHost", "must be a non-empty string");
  }
  if (resolved.brokerPort > 65535) throw BillingError.invalid("brokerPort", "must be 1..65535");
  positiveInt("brokerPort", resolved.brokerPort);
  for (const [i, b] of (o.fallbackBrokers ?? []).entries()) {
    const port = b?.port ?? resolved.brokerPort;
    if (
      typeof b?.host !== "string" ||
      b.host === "" ||
      !Number.isSafeInteger(port) ||
      port < 1 ||
      port > 65535
    ) {
      throw BillingError.invalid(
        `fallbackBrokers[${i}]`,
        "must be { host, port? } with a port in 1..65535",
      );
    }
    resolved.fallbackBrokers.push({ host: b.host, port });
  }
  if (resolved.protocolVersion !== 4 && resolved.protocolVersion !== 5) {
    throw BillingError.invalid("protocolVersion", "must be 4 (3.1.1) or 5");
  }
  if (resolved.clientId === "" || resolved.clientId.length > 128) {
    throw BillingError.invalid("clientId", "must be 1..128 characters");
  }
  const levels = resolved.topicPrefix.split("/");
  if (levels.some((l) => l === "" || /[#+]/.test(l) || l.includes("\0"))) {
    throw BillingError.invalid("topicPrefix", "must be topic levels without wildcards");
  }
  positiveInt("keepaliveSeconds", resolved.keepaliveSeconds, true);
  positiveInt("connectTimeoutMs", resolved.connectTimeoutMs);
  positiveInt("reconnectBaseMs", resolved.reconnectBaseMs);
  positiveInt("reconnectMaxMs", resolved.reconnectMaxMs);
  positiveInt("maxQueued", resolved.maxQueued);
  positiveInt("inFlightWindow", resolved.inFlightWindow);
  if (resolved.inFlightWindow > 65535)
    throw BillingError.invalid("inFlightWindow", "must be ≤ 65535");
  positiveInt("maxRecordBytes", resolved.maxRecordBytes);
  positiveInt("heartbeatIntervalMs", resolved.heartbeatIntervalMs, true);
  positiveInt("closeTimeoutMs", resolved.closeTimeoutMs, true);
  const spool = resolved.spool as Partial<SqliteSpoolOptions & RecordSpool> | undefined;
  if (
    spool !== undefined &&
    typeof spool.append !== "function" &&
    (typeof spool.path !== "string" || spool.path === "")
  ) {
    throw BillingError.invalid("spool", "must be { path } or a RecordSpool");
  }
  if ((resolved.cert === undefined) !== (resolved.key === undefined)) {
    throw BillingError.invalid("cert", "cert and key go together (mutual TLS)");
  }
  return resolved;
}

function isPlain(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && Object.getPrototypeOf(v) === Object.prototype;
}

function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Buffer.isBuffer(a) && Buffer.isBuffer(b)) return a.equals(b);
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((v, i) => sameValue(v, b[i]));
  }
  // Plain option objects (the spool's) compare by content.
  if (isPlain(a) && isPlain(b)) {
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => sameValue(a[k], b[k]));
  }
  return false;
}

/**
 * Whether two option objects configure the same client (the singleton's test). Defaults count:
 * `{}` and `{ brokerHost: "localhost" }` are equal; functions (the logger) compare by identity;
 * an unset `clientId` (random by default) equals only another unset one.
 */
export function sameOptions(a: BillingClientOptions, b: BillingClientOptions): boolean {
  if (a.clientId !== b.clientId) return false;
  const ra = resolveOptions({ ...a, clientId: "-" });
  const rb = resolveOptions({ ...b, clientId: "-" });
  return (Object.keys(ra) as Array<keyof ResolvedOptions>).every((k) => sameValue(ra[k], rb[k]));
}
