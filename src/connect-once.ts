import { connect, type IClientOptions, type IConnackPacket, type MqttClient } from "mqtt";
import type { ResolvedOptions } from "./billing-client-options.js";
import { BillingError } from "./billing-error.js";
import { toBillingError } from "./to-billing-error.js";

/** A connection that reached CONNACK, with what the broker said in it. */
export interface Connected {
  client: MqttClient;
  connack: IConnackPacket;
}

/** The MQTT will, set at each attempt. */
export interface Will {
  topic: string;
  payload: Buffer;
}

const noop = () => {};

/**
 * Ends a client for good and keeps its late events from throwing or calling back. Only the
 * "message" and "error" listeners go: mqtt.js's own "close" listener must still run its cleanup
 * (keepalive timer, connected flag), and ours ignore a client that is no longer current.
 */
export function discard(client: MqttClient): void {
  client.removeAllListeners("message");
  client.removeAllListeners("error");
  client.on("error", noop);
  client.end(true);
}

/**
 * The mqtt.js options for the broker, credentials and TLS of `o`: verified TLS 1.2+ unless told
 * otherwise. Shared by the publisher and the consumer, so both connect the same way.
 */
export function mqttOptions(
  o: Pick<
    ResolvedOptions,
    | "brokerHost"
    | "brokerPort"
    | "clientId"
    | "keepaliveSeconds"
    | "username"
    | "password"
    | "tls"
    | "dangerouslyDisableTlsVerification"
    | "ca"
    | "cert"
    | "key"
    | "servername"
  >,
  protocolVersion: 4 | 5,
): IClientOptions {
  const options: IClientOptions & { minVersion?: string } = {
    protocol: o.tls ? "mqtts" : "mqtt",
    host: o.brokerHost,
    port: o.brokerPort,
    clientId: o.clientId,
    protocolVersion,
    keepalive: o.keepaliveSeconds,
  };
  if (o.username !== undefined) options.username = o.username;
  if (o.password !== undefined) options.password = o.password;
  if (o.tls) {
    options.rejectUnauthorized = !o.dangerouslyDisableTlsVerification;
    options.minVersion = "TLSv1.2"; // reaches tls.connect; missing from IClientOptions' type
    if (o.ca !== undefined) options.ca = o.ca;
    if (o.cert !== undefined) options.cert = o.cert;
    if (o.key !== undefined) options.key = o.key;
    if (o.servername !== undefined) options.servername = o.servername;
  }
  return options;
}

/**
 * One connection attempt with mqtt.js's own reconnect turned off (billing-sdk reconnects with
 * its own backoff, on a new client each time, so nothing of a dead connection lingers). Resolves
 * at CONNACK; rejects with a `BillingError` naming the cause; never leaves a client behind.
 */
export function connectOnce(
  o: ResolvedOptions,
  protocolVersion: 4 | 5,
  will: Will | undefined,
  onStart: (client: MqttClient) => void = () => {},
): Promise<Connected> {
  const where = `broker ${o.brokerHost}:${o.brokerPort}`;
  const options: IClientOptions = {
    ...mqttOptions(o, protocolVersion),
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: o.connectTimeoutMs + 1000, // ours fires first
    ...(will === undefined
      ? {}
      : { will: { topic: will.topic, payload: will.payload, qos: 1 as const, retain: false } }),
    resubscribe: false,
  };
  return new Promise<Connected>((resolve, reject) => {
    const client = connect(options);
    onStart(client);
    let lastError: unknown;
    let settled = false;
    const fail = (err: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      discard(client);
      reject(toBillingError(err, where));
    };
    const timer = setTimeout(
      () =>
        fail(
          new BillingError("TIMEOUT", `${where}: no CONNACK within ${o.connectTimeoutMs} ms`, {
            cause: lastError,
          }),
        ),
      o.connectTimeoutMs,
    );
    timer.unref();
    const onError = (err: Error) => {
      // A refused CONNACK is final; a socket or TLS error is followed by "close".
      lastError = err;
      if (typeof (err as { code?: unknown }).code === "number") fail(err);
    };
    const onClose = () =>
      fail(lastError ?? new Error("connection closed before the broker answered CONNECT"));
    client.on("error", onError);
    client.on("close", onClose);
    client.once("connect", (connack) => {
      settled = true;
      clearTimeout(timer);
      client.off("error", onError);
      client.off("close", onClose);
      resolve({ client, connack });
    });
  });
}
