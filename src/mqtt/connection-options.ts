import { BillingError } from "../billing-error.js";
import { type BillingLogger, consoleLogger } from "../common/logger.js";
import { pem, port, positiveInt } from "../common/option-checks.js";
import { nameProblem } from "../common/text.js";
import type { BrokerSettings } from "./broker-settings.js";

/**
 * Options of the MQTT connection, the same for `BillingClient` and `createUsageConsumer()`.
 * Every option has a default.
 */
export interface MqttConnectionOptions {
  /** The broker's host name or IP address. Default: `"localhost"`. */
  brokerHost?: string;
  /** The broker's port. Default: `8883` with TLS, `1883` with `tls: false`. */
  brokerPort?: number;
  /**
   * More brokers of the same cluster, tried in turn when a connection attempt fails (failover):
   * `[{ host: "mqtt-2.example.com", port: 8883 }]`. Same credentials and TLS settings; `port`
   * defaults to `brokerPort`. Default: none.
   */
  fallbackBrokers?:
    | Array<{
        /** The broker's host name or IP address. */
        host: string;
        /** The broker's port. Default: `brokerPort`. */
        port?: number | undefined;
      }>
    | undefined;
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
  /** The prefix of every topic. Default: `"billing"`. */
  topicPrefix?: string;
  /**
   * MQTT version to try first: `5`, or `4` (3.1.1). With 5, a broker that refuses version 5
   * (Aedes, the NATS MQTT gateway, old brokers) is retried at once with 3.1.1; every connection
   * attempt, to every broker, starts with 5 again. The publisher warns when it runs on 3.1.1
   * (no PUBACK reason codes: it cannot see "no subscriber"). Default: `5`.
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
  /** Where log lines go. Default: info, warnings and errors to `console.error` (debug dropped). */
  logger?: BillingLogger;
}

/** One broker to try: `brokerHost:brokerPort` first, then `fallbackBrokers`. */
export type BrokerAddress = { host: string; port: number };

type WithoutDefault = "username" | "password" | "ca" | "cert" | "key" | "servername";

/** The connection options with every default filled in, and the client id. */
export type ResolvedConnectionOptions = Required<
  Omit<MqttConnectionOptions, WithoutDefault | "fallbackBrokers">
> & {
  [K in WithoutDefault]: MqttConnectionOptions[K] | undefined;
} & { fallbackBrokers: BrokerAddress[]; clientId: string };

/**
 * Fills the defaults of the connection options and checks them (and `clientId`, which each
 * owner defaults in its own way): the one place they live. Throws `INVALID_ARGUMENT` naming the
 * option.
 */
export function resolveConnectionOptions(
  o: MqttConnectionOptions,
  clientId: string,
): ResolvedConnectionOptions {
  const tls = o.tls ?? true;
  const resolved: ResolvedConnectionOptions = {
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
    clientId,
    topicPrefix: o.topicPrefix ?? "billing",
    protocolVersion: o.protocolVersion ?? 5,
    keepaliveSeconds: o.keepaliveSeconds ?? 30,
    connectTimeoutMs: o.connectTimeoutMs ?? 10_000,
    reconnectBaseMs: o.reconnectBaseMs ?? 500,
    reconnectMaxMs: o.reconnectMaxMs ?? 30_000,
    logger: o.logger ?? consoleLogger,
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
  pem("ca", resolved.ca);
  pem("cert", resolved.cert);
  pem("key", resolved.key);
  if ((resolved.cert === undefined) !== (resolved.key === undefined)) {
    throw BillingError.invalid("cert", "cert and key go together (mutual TLS)");
  }
  return resolved;
}

/** The connection settings of `o` for the broker `b` (the primary one by default). */
export function brokerSettings(o: ResolvedConnectionOptions, b?: BrokerAddress): BrokerSettings {
  return { ...o, brokerHost: b?.host ?? o.brokerHost, brokerPort: b?.port ?? o.brokerPort };
}

/** Every broker to try, in order: `brokerHost:brokerPort` first, then `fallbackBrokers`. */
export function brokerList(o: ResolvedConnectionOptions): BrokerAddress[] {
  return [{ host: o.brokerHost, port: o.brokerPort }, ...o.fallbackBrokers];
}
