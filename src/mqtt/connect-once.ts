import { connect, type IClientOptions, type IConnackPacket, type MqttClient } from "mqtt";
import { BillingError } from "../billing-error.js";
import { type BrokerSettings, brokerName, mqttOptions } from "./broker-settings.js";
import {
  CLOSED_EARLY,
  errorHints,
  isUnsupportedProtocol,
  toBillingError,
} from "./to-billing-error.js";

/** A connection that reached CONNACK, with what the broker said in it. */
export interface Connected {
  client: MqttClient;
  connack: IConnackPacket;
  /** The MQTT version in use: 5, or 4 (3.1.1). */
  version: 4 | 5;
}

/** What one attempt adds to the broker settings. */
export interface AttemptOptions {
  /** The MQTT will, set at this attempt. Default: none. */
  will?: { topic: string; payload: Buffer } | undefined;
  /** mqtt.js options that differ per use and version (session, acks): `clean`, `properties`… */
  extra?: ((version: 4 | 5) => Partial<IClientOptions>) | undefined;
  /** Called with the client as soon as it exists (so that a close can discard it). */
  onStart?: ((client: MqttClient) => void) | undefined;
}

const noop = () => {};

/**
 * Ends a client for good, at once, and keeps its late events from throwing or calling back. Only
 * the "message" and "error" listeners go: mqtt.js's own "close" listener must still run its
 * cleanup (keepalive timer, connected flag), and ours ignore a client that is no longer current.
 * A client already ending gracefully (`end(false)` waits for its outgoing queue, which a broker
 * that never answers never empties) is not ended again by mqtt.js: its socket is destroyed here.
 */
export function discard(client: MqttClient): void {
  client.removeAllListeners("message");
  client.removeAllListeners("error");
  client.on("error", noop);
  if (client.disconnecting) client.stream?.destroy();
  else client.end(true);
}

/**
 * One connection attempt with mqtt.js's own reconnect turned off (billing-sdk reconnects with
 * its own backoff, on a new client each time, so nothing of a dead connection lingers). Resolves
 * at CONNACK; rejects with a `BillingError` naming the cause; never leaves a client behind.
 */
export function connectOnce(
  s: BrokerSettings,
  version: 4 | 5,
  attempt: AttemptOptions = {},
): Promise<Connected> {
  const where = `broker ${brokerName(s)}`;
  const options: IClientOptions = {
    ...mqttOptions(s, version),
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: s.connectTimeoutMs + 1000, // ours fires first
    resubscribe: false,
    ...attempt.extra?.(version),
  };
  if (attempt.will !== undefined) {
    options.will = {
      topic: attempt.will.topic,
      payload: attempt.will.payload,
      qos: 1,
      retain: false,
    };
  }
  return new Promise<Connected>((resolve, reject) => {
    const client = connect(options);
    attempt.onStart?.(client);
    let lastError: unknown;
    let settled = false;
    const fail = (err: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      discard(client);
      reject(toBillingError(err, where, errorHints(s)));
    };
    const timer = setTimeout(
      () =>
        fail(
          new BillingError("TIMEOUT", `${where}: no CONNACK within ${s.connectTimeoutMs} ms`, {
            cause: lastError,
          }),
        ),
      s.connectTimeoutMs,
    );
    timer.unref();
    const onError = (err: Error) => {
      // A refused CONNACK is final; a socket or TLS error is followed by "close".
      lastError = err;
      if (typeof (err as { code?: unknown }).code === "number") fail(err);
    };
    const onClose = () => fail(lastError ?? new Error(CLOSED_EARLY));
    client.on("error", onError);
    client.on("close", onClose);
    client.once("connect", (connack) => {
      settled = true;
      clearTimeout(timer);
      client.off("error", onError);
      client.off("close", onClose);
      resolve({ client, connack, version });
    });
  });
}

/**
 * Connects with MQTT `preferred`; when that is 5 and the broker refuses the version (Aedes, the
 * NATS gateway, old brokers speak 3.1.1 only), tries 3.1.1 at once. The one place of the v5
 * fallback: the publisher keeps the version it got, the consumer and the CLI use it as is.
 */
export async function connectNegotiated(
  s: BrokerSettings,
  preferred: 4 | 5,
  attempt: AttemptOptions = {},
): Promise<Connected> {
  try {
    return await connectOnce(s, preferred, attempt);
  } catch (err) {
    if (preferred === 5 && isUnsupportedProtocol((err as BillingError).cause)) {
      return connectOnce(s, 4, attempt);
    }
    throw err;
  }
}
