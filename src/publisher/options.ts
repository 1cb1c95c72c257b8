import { isIP } from "node:net";
import { BillingError } from "../billing-error.js";
import { defaultClientId } from "../common/client-id.js";
import { MAX_TIMER_MS } from "../common/deadline.js";
import { type BillingLogger, consoleLogger } from "../common/logger.js";
import { nameProblem } from "../common/text.js";
import type { BrokerSettings } from "../mqtt/broker-settings.js";
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
}

/** One broker to try: `brokerHost:brokerPort` first, then `fallbackBrokers`. */
export type BrokerAddress = { host: string; port: number };

type WithoutDefault = "username" | "password" | "ca" | "cert" | "key" | "servername" | "spool";

/** The options with every default filled in. */
export type ResolvedOptions = Required<
  Omit<BillingClientOptions, WithoutDefault | "fallbackBrokers">
> & {
  [K in WithoutDefault]: BillingClientOptions[K] | undefined;
} & { fallbackBrokers: BrokerAddress[] };

function positiveInt(name: string, value: number, allowZero = false, max = MAX_TIMER_MS): number {
  if (!Number.isSafeInteger(value) || value < 0 || (value === 0 && !allowZero) || value > max) {
    throw BillingError.invalid(
      name,
      `must be a ${allowZero ? "non-negative" : "positive"} integer ≤ ${max}, not ${String(value)}`,
    );
  }
  return value;
}

function port(name: string, value: unknown): number {
  if (!Number.isSafeInteger(value) || (value as number) < 1 || (value as number) > 65535) {
    throw BillingError.invalid(name, `must be a port in 1..65535, not ${String(value)}`);
  }
  return value as number;
}

/**
 * A `ca`/`cert`/`key` must be PEM text: a path given by mistake would otherwise be accepted and
 * fail later like a missing CA.
 */
function pem(name: string, value: unknown): void {
  if (value === undefined) return;
  const items = Array.isArray(value) ? value : [value];
  for (const item of items) {
    const text = Buffer.isBuffer(item) ? item.toString("latin1") : item;
    if (typeof text !== "string" || !text.includes("-----BEGIN ")) {
      // The value is never echoed: it may be key material in another format.
      throw BillingError.invalid(
        name,
        `must be PEM text ("-----BEGIN ..."), not a path: pass the file's contents: readFileSync("${name}.pem", "utf8")`,
      );
    }
  }
}

/** Fills the defaults and checks every option: the one place defaults live. */
export function resolveOptions(o: BillingClientOptions): ResolvedOptions {
  if (typeof o !== "object" || o === null)
    throw BillingError.invalid("options", "must be an object");
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
    heartbeatIntervalMs: o.heartbeatIntervalMs ?? 10_000,
    closeTimeoutMs: o.closeTimeoutMs ?? 10_000,
    logger: o.logger ?? consoleLogger,
    spool: o.spool,
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
  positiveInt("heartbeatIntervalMs", resolved.heartbeatIntervalMs, true);
  positiveInt("closeTimeoutMs", resolved.closeTimeoutMs, true);
  const spool = resolved.spool as Partial<RecordSpool> | undefined;
  if (
    spool !== undefined &&
    (typeof spool !== "object" ||
      spool === null ||
      typeof spool.load !== "function" ||
      typeof spool.append !== "function" ||
      typeof spool.remove !== "function" ||
      typeof spool.count !== "function" ||
      typeof spool.close !== "function")
  ) {
    throw BillingError.invalid(
      "spool",
      "must be a RecordSpool, e.g. new SqliteSpool({ path }) from billing-sdk/spool",
    );
  }
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

/** Every broker to try, in order: `brokerHost:brokerPort` first, then `fallbackBrokers`. */
export function brokerList(o: ResolvedOptions): BrokerAddress[] {
  return [{ host: o.brokerHost, port: o.brokerPort }, ...o.fallbackBrokers];
}

/** Whether `host` names this machine's loopback interface (traffic to it never leaves the host). */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, "");
  if (h === "localhost") return true; // not *.localhost: such names may go to DNS
  if (isIP(h) === 4) return h.startsWith("127.");
  if (h === "::1") return true;
  return /^::ffff:127\./.test(h);
}

/** Warnings the options deserve, logged once when the client is made. */
export function securityWarnings(o: ResolvedOptions): string[] {
  const warnings: string[] = [];
  if (o.tls && o.dangerouslyDisableTlsVerification) {
    warnings.push(
      "TLS certificate verification is OFF (dangerouslyDisableTlsVerification): anyone on the " +
        "network path can read and forge billing traffic. Never use this in production.",
    );
  }
  const remote = brokerList(o).filter((b) => !isLoopback(b.host));
  if (!o.tls && o.password !== undefined && remote.length > 0) {
    warnings.push(
      `tls: false with a password: the password and all billing traffic cross the network to ${remote
        .map((b) => `${b.host}:${b.port}`)
        .join(", ")} in clear text. Use TLS (the default) for any broker that is not on loopback.`,
    );
  }
  return warnings;
}
