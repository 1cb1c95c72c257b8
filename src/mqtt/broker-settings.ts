import type { ConnectionOptions } from "node:tls";
import type { IClientOptions } from "mqtt";

/** How to reach and authenticate with one broker: what every MQTT connection of the SDK needs. */
export interface BrokerSettings {
  brokerHost: string;
  brokerPort: number;
  clientId: string;
  keepaliveSeconds: number;
  connectTimeoutMs: number;
  username: string | undefined;
  password: string | undefined;
  tls: boolean;
  dangerouslyDisableTlsVerification: boolean;
  ca: string | Buffer | string[] | Buffer[] | undefined;
  cert: string | Buffer | undefined;
  key: string | Buffer | undefined;
  servername: string | undefined;
}

/** `host:port`, for messages. */
export function brokerName(s: Pick<BrokerSettings, "brokerHost" | "brokerPort">): string {
  return `${s.brokerHost}:${s.brokerPort}`;
}

/**
 * The TLS options of `s`: verified (unless told otherwise), TLS 1.2 at least, its CA, client
 * certificate and server name. The one place they are built (the SDK's connections and
 * `billing-sdk doctor`'s bare TLS probe).
 */
export function tlsOptions(s: BrokerSettings): ConnectionOptions {
  const options: ConnectionOptions = {
    host: s.brokerHost,
    port: s.brokerPort,
    minVersion: "TLSv1.2",
    rejectUnauthorized: !s.dangerouslyDisableTlsVerification,
  };
  if (s.ca !== undefined) options.ca = s.ca;
  if (s.cert !== undefined) options.cert = s.cert;
  if (s.key !== undefined) options.key = s.key;
  if (s.servername !== undefined) options.servername = s.servername;
  return options;
}

/** The mqtt.js options for the broker, credentials and TLS of `s`, at `protocolVersion`. */
export function mqttOptions(s: BrokerSettings, protocolVersion: 4 | 5): IClientOptions {
  const options: IClientOptions = {
    protocol: s.tls ? "mqtts" : "mqtt",
    host: s.brokerHost,
    port: s.brokerPort,
    clientId: s.clientId,
    protocolVersion,
    keepalive: s.keepaliveSeconds,
  };
  if (s.username !== undefined) options.username = s.username;
  if (s.password !== undefined) options.password = s.password;
  // minVersion reaches tls.connect although IClientOptions' type lacks it.
  if (s.tls) Object.assign(options, tlsOptions(s));
  return options;
}
