import { connect, type MqttClient } from "mqtt";
import type { UsageRecord } from "../../gen/billing/v1/usage_pb.js";
import { BillingError } from "../billing-error.js";
import { defaultClientId } from "../common/client-id.js";
import { mqttOptions } from "../mqtt/broker-settings.js";
import { billingTopics } from "../protocol/topics.js";
import { decodeUsageBatch } from "../protocol/usage-batch.js";
import { type BillingClientOptions, resolveOptions } from "../publisher/options.js";

/** Options of `createUsageConsumer()`: the connection options of `BillingClient`, and these. */
export interface UsageConsumerOptions
  extends Pick<
    BillingClientOptions,
    | "brokerHost"
    | "brokerPort"
    | "username"
    | "password"
    | "tls"
    | "ca"
    | "cert"
    | "key"
    | "servername"
    | "dangerouslyDisableTlsVerification"
    | "topicPrefix"
    | "keepaliveSeconds"
    | "logger"
  > {
  /** Called once per record (duplicates by `id` within the window are dropped first). Required. */
  onRecord: (record: UsageRecord) => void | Promise<void>;
  /**
   * MQTT 5 shared-subscription group: consumers in one group split the records
   * (`$share/<group>/<prefix>/report`). Default: `"billing-backend"`.
   */
  group?: string | undefined;
  /** How many recent ids are remembered to drop duplicates. Default: `100_000`. */
  dedupeWindow?: number | undefined;
  /** MQTT client id. Default: `billing-consumer-<hostname>-<random>`. */
  clientId?: string | undefined;
}

/** Counters of a consumer. */
export interface UsageConsumerStats {
  /** Payloads received. */
  received: number;
  /** Records given to `onRecord`. */
  handled: number;
  /** Records dropped because their id was seen within the window. */
  duplicates: number;
  /** Payloads that are not a `UsageBatch` (ignored). */
  invalid: number;
  /** `onRecord` calls that threw or rejected. */
  failed: number;
}

/** A running consumer: `stats()`, and `close()` to stop. */
export interface UsageConsumer {
  /** Resolves once subscribed. */
  readonly ready: Promise<void>;
  stats(): UsageConsumerStats;
  close(): Promise<void>;
}

/**
 * A consumer for TypeScript backends: subscribes to `<prefix>/report` through an MQTT 5 shared
 * subscription, decodes `UsageRecord`s and drops duplicates by `id` within a bounded window.
 * Each message is acknowledged after `onRecord` settles. The window is per consumer: a duplicate
 * that reaches two consumers of a group is handled by both, so the backend's store must still
 * dedupe on `id` (a unique key) for exactly-once effects.
 */
export function createUsageConsumer(options: UsageConsumerOptions): UsageConsumer {
  if (typeof options.onRecord !== "function") {
    throw BillingError.invalid("onRecord", "must be a function");
  }
  const group = options.group ?? "billing-backend";
  if (!/^[^/#+]+$/.test(group)) throw BillingError.invalid("group", "must be one topic level");
  const window = options.dedupeWindow ?? 100_000;
  if (!Number.isSafeInteger(window) || window < 1) {
    throw BillingError.invalid("dedupeWindow", "must be a positive integer");
  }
  const o = resolveOptions({
    ...options,
    clientId: options.clientId ?? defaultClientId("billing-consumer"),
  });
  const topic = `$share/${group}/${billingTopics(o.topicPrefix).report}`;
  const recent = new Set<string>();
  const counters: UsageConsumerStats = {
    received: 0,
    handled: 0,
    duplicates: 0,
    invalid: 0,
    failed: 0,
  };

  async function handle(payload: Buffer): Promise<void> {
    counters.received++;
    let records: UsageRecord[];
    try {
      records = decodeUsageBatch(payload);
    } catch {
      counters.invalid++;
      o.logger("warn", `ignored a payload that is not a UsageBatch (${payload.length} bytes)`);
      return;
    }
    for (const record of records) await handleRecord(record);
  }

  async function handleRecord(record: UsageRecord): Promise<void> {
    if (recent.has(record.id)) {
      counters.duplicates++;
      return;
    }
    recent.add(record.id);
    if (recent.size > window) recent.delete(recent.values().next().value as string);
    try {
      await options.onRecord(record);
      counters.handled++;
    } catch (err) {
      counters.failed++;
      o.logger("error", `onRecord failed for record ${record.id}`, { err });
    }
  }

  const client: MqttClient = connect({
    ...mqttOptions(o, 5),
    reconnectPeriod: 1000,
    // Acknowledge each message only once it has been handled.
    customHandleAcks: (_topic, payload, _packet, done) => {
      handle(payload).then(
        () => done(0),
        () => done(0),
      );
    },
  });
  client.on("error", (err) => o.logger("warn", `consumer connection error: ${err.message}`));
  const ready = new Promise<void>((resolve, reject) => {
    client.once("connect", () => {
      client.subscribe(topic, { qos: 1 }, (err) => (err ? reject(err) : resolve()));
    });
  });
  ready.catch(() => {});
  return {
    ready,
    stats: () => ({ ...counters }),
    close: () => client.endAsync(),
  };
}
