import { BillingError } from "../../billing-error.js";
import { defaultClientId } from "../../common/client-id.js";
import { positiveInt } from "../../common/option-checks.js";
import {
  type MqttConnectionOptions,
  type ResolvedConnectionOptions,
  resolveConnectionOptions,
} from "../../mqtt/index.js";
import {
  type KeySyncOptions,
  type ResolvedKeySyncOptions,
  resolveKeySyncOptions,
} from "../key-sync/key-sync-options.js";
import {
  type BatchOptions,
  type QueueOptions,
  type ResolvedPipelineOptions,
  resolvePipelineOptions,
} from "../pipeline/pipeline-options.js";
import { checkSpool, type RecordSpool } from "../record-spool.js";

/**
 * Options of `new BillingClient(options)`: one flat object, made of the options each part owns
 * (the connection's {@link MqttConnectionOptions}, the queue's {@link QueueOptions}, the send
 * pipeline's {@link BatchOptions}, the key sync's {@link KeySyncOptions}) and these. Every option
 * has a default.
 */
export interface BillingClientOptions
  extends MqttConnectionOptions,
    QueueOptions,
    BatchOptions,
    KeySyncOptions {
  /** MQTT client id, also the `producer` of every record. Default: `billing-<hostname>-<random>`. */
  clientId?: string;
  /** How often a `Heartbeat` is published; `0` disables it. Default: `10_000` ms. */
  heartbeatIntervalMs?: number;
  /** How long `close()` waits for queued records to be acknowledged. Default: `10_000` ms. */
  closeTimeoutMs?: number;
  /**
   * A durable outbox that keeps accepted records until the broker acknowledges them, so they
   * survive a crash, an outage and a restart: `new SqliteSpool({ path: "./billing-spool.db" })`
   * from `billing-sdk/spool` (needs the optional peer dependency better-sqlite3 12), or your own
   * `RecordSpool`. `reportUsage` then resolves once the record is stored. Default: none (memory).
   */
  spool?: RecordSpool | undefined;
}

type OwnedElsewhere =
  | keyof MqttConnectionOptions
  | keyof QueueOptions
  | keyof BatchOptions
  | keyof KeySyncOptions;

/** The options with every default filled in: each part's resolved options and these. */
export type ResolvedOptions = ResolvedConnectionOptions &
  ResolvedPipelineOptions &
  ResolvedKeySyncOptions &
  Required<Omit<BillingClientOptions, OwnedElsewhere | "clientId" | "spool">> & {
    spool: RecordSpool | undefined;
  };

/**
 * Fills the defaults and checks every option, each part's with its own resolver (the connection's
 * first, then the pipeline's, these, and the key sync's): the one place defaults live.
 */
export function resolveOptions(o: BillingClientOptions): ResolvedOptions {
  if (typeof o !== "object" || o === null)
    throw BillingError.invalid("options", "must be an object");
  const connection = resolveConnectionOptions(o, o.clientId ?? defaultClientId("billing"));
  const pipeline = resolvePipelineOptions(o);
  const own = {
    heartbeatIntervalMs: o.heartbeatIntervalMs ?? 10_000,
    closeTimeoutMs: o.closeTimeoutMs ?? 10_000,
    spool: o.spool,
  };
  positiveInt("heartbeatIntervalMs", own.heartbeatIntervalMs, true);
  positiveInt("closeTimeoutMs", own.closeTimeoutMs, true);
  checkSpool(own.spool);
  return {
    ...connection,
    ...pipeline,
    ...own,
    ...resolveKeySyncOptions(o, connection.topicPrefix),
  };
}
