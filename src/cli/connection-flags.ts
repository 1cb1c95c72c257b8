import { readFileSync } from "node:fs";
import { BillingError } from "../billing-error.js";
import { defaultClientId } from "../common/client-id.js";
import type { BrokerSettings } from "../mqtt/broker-settings.js";
import { noteCaFile } from "../mqtt/ca-files.js";
import { type BillingClientOptions, resolveOptions } from "../publisher/client/options.js";

/** The connection flags every CLI command takes. */
export const connectionFlags = {
  broker: { type: "string" },
  username: { type: "string" },
  password: { type: "string" },
  ca: { type: "string" },
  cert: { type: "string" },
  key: { type: "string" },
  servername: { type: "string" },
  insecure: { type: "boolean" },
  prefix: { type: "string" },
} as const;

export const connectionHelp = `connection:
  --broker URL        mqtts://host:8883 (default mqtts://localhost:8883) or mqtt://host:1883
  --username NAME     MQTT user name
  --password PASS     MQTT password (or env BILLING_MQTT_PASSWORD)
  --ca FILE           PEM CA to verify the broker with (default: the system CAs)
  --cert FILE --key FILE   client certificate for mutual TLS
  --servername NAME   the name the broker certificate must carry
  --insecure          do not verify the broker certificate (dangerous)
  --prefix PREFIX     topic prefix (default billing)`;

export interface ConnectionValues {
  broker?: string | undefined;
  username?: string | undefined;
  password?: string | undefined;
  ca?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
  servername?: string | undefined;
  insecure?: boolean | undefined;
  prefix?: string | undefined;
}

/** A broker URL (`mqtts://host:8883`, `mqtt://host`) split into host, port and TLS. */
export function brokerUrl(
  flag: string,
  value: string,
): { host: string; port: number; tls: boolean } {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw BillingError.invalid(flag, "must be a URL like mqtts://host:8883");
  }
  if (url.protocol !== "mqtts:" && url.protocol !== "mqtt:") {
    throw BillingError.invalid(flag, "must start with mqtts:// or mqtt://");
  }
  const tls = url.protocol === "mqtts:";
  return {
    host: url.hostname.replace(/^\[|\]$/g, ""),
    port: url.port === "" ? (tls ? 8883 : 1883) : Number(url.port),
    tls,
  };
}

/** The PEM text of --ca, remembered with its file (for TLS errors that name it). */
function caFrom(pem: string | undefined, file: string | undefined): string | undefined {
  if (pem !== undefined && file !== undefined) noteCaFile(pem, file);
  return pem;
}

/** Turns the connection flags into BillingClient options (files read, URL split). */
export function connectionOptions(v: ConnectionValues): BillingClientOptions {
  const { host, port, tls } = brokerUrl("--broker", v.broker ?? "mqtts://localhost:8883");
  const read = (flag: string, path: string | undefined) => {
    if (path === undefined) return undefined;
    try {
      return readFileSync(path, "utf8");
    } catch (err) {
      throw BillingError.invalid(flag, `cannot read ${path}: ${(err as Error).message}`);
    }
  };
  return {
    brokerHost: host,
    brokerPort: port,
    tls,
    username: v.username,
    password: v.password ?? process.env.BILLING_MQTT_PASSWORD,
    ca: caFrom(read("--ca", v.ca), v.ca),
    cert: read("--cert", v.cert),
    key: read("--key", v.key),
    servername: v.servername,
    dangerouslyDisableTlsVerification: v.insecure ?? false,
    topicPrefix: v.prefix ?? "billing",
  };
}

/** The broker settings and topic prefix of a command, with a client id `billing-<role>-<host>-<random>`. */
export function cliSettings(
  v: ConnectionValues,
  role: string,
  extra: BillingClientOptions = {},
): BrokerSettings & { topicPrefix: string } {
  return resolveOptions({
    ...connectionOptions(v),
    clientId: defaultClientId(`billing-${role}`),
    ...extra,
  });
}
