import { hostname } from "node:os";
import type { UsageRecord } from "../../gen/billing/v1/usage_pb.js";
import { BillingError } from "../billing-error.js";
import { positiveInt } from "../common/option-checks.js";
import {
  type MqttConnectionOptions,
  type ResolvedConnectionOptions,
  resolveConnectionOptions,
} from "../mqtt/connection-options.js";
import type { RejectedRecord, UsageStore } from "./usage-store.js";

/** Options of `createUsageConsumer()`: the connection options of `BillingClient`, and these. */
export interface UsageConsumerOptions extends MqttConnectionOptions {
  /**
   * Where the records go, a batch of messages at a time: e.g. `createPostgresUsageStore()` from
   * `billing-sdk/postgres`. Give `store` or `onRecord`. Default: none.
   */
  store?: UsageStore | undefined;
  /**
   * Called once per record (a record whose id was handled recently is skipped); a message is
   * acknowledged once every record of it was handled. Never called for two records of one id at
   * once: one with other content that arrives meanwhile goes to `onRejected` (an id conflict),
   * a byte-identical copy waits for the first call's outcome. Must be idempotent: after a crash
   * the broker delivers again what was not acknowledged. Give `store` or `onRecord`.
   * Default: none.
   */
  onRecord?: ((record: UsageRecord) => void | Promise<void>) | undefined;
  /**
   * Called with each record (or message) that validation refused, before it is acknowledged;
   * with a `store`, rejections go to the store instead. Default: logged as a warning.
   */
  onRejected?: ((rejected: RejectedRecord) => void | Promise<void>) | undefined;
  /**
   * MQTT 5 shared-subscription group: consumers in one group split the records
   * (`$share/<group>/<prefix>/report`), each record goes to one of them. Without a group the
   * consumer subscribes to `<prefix>/report` itself and gets every record. On an MQTT 3.1.1
   * broker there is no shared subscription: the group is ignored. Note: mosquitto 2.0 does not
   * keep shared subscriptions across its own restart (see docs/scaling.md). Default: none.
   */
  group?: string | undefined;
  /**
   * MQTT client id, which names the persistent session: it must be the same at every start and
   * differ between consumers (a second connection with the same id takes the session over).
   * Default: `billing-consumer-<hostname>`, or `billing-consumer-<group>-<hostname>` with a
   * group (one consumer per group and host).
   */
  clientId?: string | undefined;
  /**
   * How long the broker keeps the session (the subscription and the records that arrive) while
   * the consumer is away; `0` ends it at disconnect (MQTT 3.1.1: a clean session). On MQTT
   * 3.1.1 any other value keeps it until the broker drops it. Default: `604_800` (7 days).
   */
  sessionExpirySeconds?: number | undefined;
  /**
   * How many `store.write` calls, or `onRecord` calls, run at once. Default: `2` writes with a
   * store, `8` calls with `onRecord`.
   */
  concurrency?: number | undefined;
  /**
   * How long one `store.write` or `onRecord` call may take; past it, it counts as failed and is
   * tried again (its messages stay unacknowledged). Default: `30_000` ms.
   */
  handlerTimeoutMs?: number | undefined;
  /**
   * The most records in one `store.write` (a message with more is written in parts, and
   * acknowledged after the last). Default: `2000`.
   */
  maxBatchRecords?: number | undefined;
  /**
   * Messages received and not yet handled that the consumer holds; also its MQTT 5 receive
   * maximum, so the broker sends no more unacknowledged ones. Past it, reading pauses.
   * Default: `1000`.
   */
  maxPendingMessages?: number | undefined;
  /** Bytes of those messages together; past it, reading pauses. Default: `67_108_864` (64 MiB). */
  maxPendingBytes?: number | undefined;
  /**
   * The largest message taken: MQTT 5 announces it to the broker as the maximum packet size (it
   * then sends nothing larger); a larger one that arrives anyway (MQTT 3.1.1) is rejected whole
   * without being decoded, its first 64 KiB kept. Default: `16_777_216` (16 MiB; a producer's
   * batches are at most `maxBatchBytes`, 256 KiB by default).
   */
  maxMessageBytes?: number | undefined;
  /** How many recently handled ids are remembered to skip duplicates. Default: `100_000`. */
  dedupeWindow?: number | undefined;
  /** How long `close()` waits for what was received to be handled. Default: `10_000` ms. */
  closeTimeoutMs?: number | undefined;
}

/** The consumer's options with every default filled in. */
export interface ResolvedConsumerOptions {
  connection: ResolvedConnectionOptions;
  store: UsageStore | undefined;
  onRecord: ((record: UsageRecord) => void | Promise<void>) | undefined;
  onRejected: ((rejected: RejectedRecord) => void | Promise<void>) | undefined;
  group: string | undefined;
  sessionExpirySeconds: number;
  concurrency: number;
  handlerTimeoutMs: number;
  maxBatchRecords: number;
  maxPendingMessages: number;
  maxPendingBytes: number;
  maxMessageBytes: number;
  dedupeWindow: number;
  closeTimeoutMs: number;
}

/** The consumer's connection options (its own keys left out). */
function connectionPart(o: UsageConsumerOptions): MqttConnectionOptions {
  const {
    store: _store,
    onRecord: _onRecord,
    onRejected: _onRejected,
    group: _group,
    clientId: _clientId,
    sessionExpirySeconds: _expiry,
    concurrency: _concurrency,
    handlerTimeoutMs: _timeout,
    maxBatchRecords: _batch,
    maxPendingMessages: _messages,
    maxPendingBytes: _bytes,
    maxMessageBytes: _message,
    dedupeWindow: _window,
    closeTimeoutMs: _close,
    ...connection
  } = o;
  return connection;
}

/** Fills the defaults and checks every option: the one place the consumer's defaults live. */
export function resolveConsumerOptions(o: UsageConsumerOptions): ResolvedConsumerOptions {
  if (typeof o !== "object" || o === null) {
    throw BillingError.invalid("options", "must be an object");
  }
  const hasStore = o.store !== undefined;
  if (hasStore === (o.onRecord !== undefined)) {
    throw BillingError.invalid("onRecord", "give either a store or an onRecord function");
  }
  if (hasStore && typeof o.store?.write !== "function") {
    throw BillingError.invalid("store", "must be a UsageStore (an object with write(batch))");
  }
  if (!hasStore && typeof o.onRecord !== "function") {
    throw BillingError.invalid("onRecord", "must be a function");
  }
  if (o.onRejected !== undefined && typeof o.onRejected !== "function") {
    throw BillingError.invalid("onRejected", "must be a function");
  }
  const group = o.group;
  if (group !== undefined && (typeof group !== "string" || !/^[^/#+\s]{1,64}$/.test(group))) {
    throw BillingError.invalid("group", "must be one topic level of 1..64 characters");
  }
  const clientId =
    o.clientId ??
    `billing-consumer-${group === undefined ? "" : `${group}-`}${hostname().slice(0, 40)}`;
  const r: ResolvedConsumerOptions = {
    connection: resolveConnectionOptions(connectionPart(o), clientId),
    store: o.store,
    onRecord: o.onRecord,
    onRejected: o.onRejected,
    group,
    sessionExpirySeconds: o.sessionExpirySeconds ?? 604_800,
    concurrency: o.concurrency ?? (hasStore ? 2 : 8),
    handlerTimeoutMs: o.handlerTimeoutMs ?? 30_000,
    maxBatchRecords: o.maxBatchRecords ?? 2000,
    maxPendingMessages: o.maxPendingMessages ?? 1000,
    maxPendingBytes: o.maxPendingBytes ?? 64 * 1024 * 1024,
    maxMessageBytes: o.maxMessageBytes ?? 16 * 1024 * 1024,
    dedupeWindow: o.dedupeWindow ?? 100_000,
    closeTimeoutMs: o.closeTimeoutMs ?? 10_000,
  };
  const big = Number.MAX_SAFE_INTEGER;
  positiveInt("sessionExpirySeconds", r.sessionExpirySeconds, true, 0xffff_ffff);
  positiveInt("concurrency", r.concurrency, false, 1000);
  positiveInt("handlerTimeoutMs", r.handlerTimeoutMs);
  positiveInt("maxBatchRecords", r.maxBatchRecords, false, big);
  positiveInt("maxPendingMessages", r.maxPendingMessages, false, 65_535);
  positiveInt("maxPendingBytes", r.maxPendingBytes, false, big);
  positiveInt("maxMessageBytes", r.maxMessageBytes, false, 268_435_455);
  positiveInt("dedupeWindow", r.dedupeWindow, true, big);
  positiveInt("closeTimeoutMs", r.closeTimeoutMs, true);
  return r;
}
