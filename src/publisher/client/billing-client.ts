import type { IConnackPacket, MqttClient } from "mqtt";
import type { UsageRecord } from "../../../gen/billing/v1/usage_pb.js";
import { BillingError, type BillingErrorCode } from "../../billing-error.js";
import { backoff } from "../../common/backoff.js";
import { badTimeout } from "../../common/deadline.js";
import type { LogLevel } from "../../common/logger.js";
import { clientSlot } from "../../common/process-slots.js";
import type { KeyList } from "../../keys/key-list.js";
import { debitReported } from "../../keys/usage-debits.js";
import { Connection, closedError } from "../../mqtt/index.js";
import { type BillingTopics, billingTopics } from "../../protocol/topics.js";
import { encodeUsage, type RecordContext, type UsageInit } from "../../protocol/usage-input.js";
import { KeySync } from "../key-sync/key-sync.js";
import { maximumPacketSize } from "../key-sync/key-sync-options.js";
import { SpoolOutbox } from "../outbox/spool-outbox.js";
import type { PendingRecord } from "../pending-record.js";
import { mqttPublishLink } from "../pipeline/mqtt-publish-link.js";
import { PendingLedger } from "../pipeline/pending-ledger.js";
import { SendPipeline } from "../pipeline/send-pipeline.js";
import type { RecordSpool } from "../record-spool.js";
import { type BillingStats, collectStats } from "./billing-stats.js";
import { connackProblem, connectionLimits } from "./connection-limits.js";
import { type LeftAtExit, warnAtExit } from "./exit-warning.js";
import { Heartbeat } from "./heartbeat.js";
import { Mqtt311Warning } from "./mqtt311-warning.js";
import { type BillingClientOptions, type ResolvedOptions, resolveOptions } from "./options.js";
import { sameOptions } from "./same-options.js";
import { securityWarnings } from "./security-warnings.js";

/** How long the goodbye heartbeat and DISCONNECT may take at close. */
const GOODBYE_MS = 2000;

/**
 * The process-wide billing connection: publishes `UsageRecord`s at QoS 1 and keeps the API-key
 * list the backend pushes. Constructing registers the instance; constructing again with equal
 * options returns it, with different options throws `ALREADY_INITIALIZED`; `close()` unregisters.
 *
 * A facade over the publisher's parts: `Connection` (mqtt/: the MQTT connection and its state),
 * `SendPipeline` and `PendingLedger` (pipeline/: queue, window, retries; bounds and flush),
 * `KeySync` (key-sync/), `Heartbeat` and, with a spool, `SpoolOutbox` (outbox/).
 */
export class BillingClient {
  /** The API-key list pushed by the billing backend. */
  readonly keys!: KeyList;
  /** The topics in use. */
  readonly topics!: BillingTopics;
  private readonly given!: BillingClientOptions;
  private readonly o!: ResolvedOptions;
  private lifecycle: "running" | "closing" | "closed" = "running";
  private closePromise: Promise<void> | undefined;
  private readonly ledger!: PendingLedger;
  private readonly pipeline!: SendPipeline;
  private readonly keySync!: KeySync;
  private readonly heartbeat!: Heartbeat;
  private readonly connection!: Connection;
  private readonly mqtt311!: Mqtt311Warning;
  private readonly recordContext!: RecordContext;
  private outbox: SpoolOutbox | undefined;
  private nextSeq = 0;
  private readonly rejected: Partial<Record<BillingErrorCode, number>> = {};

  constructor(options: BillingClientOptions = {}) {
    const existing = getBillingClient();
    if (existing !== undefined) {
      // The singleton contract of the Python SDK, made explicit: equal options give the one
      // instance (a constructor may return another object), different ones are an error.
      // biome-ignore lint/correctness/noConstructorReturn: the singleton is the point
      if (sameOptions(existing.given, options)) return existing;
      throw new BillingError(
        "ALREADY_INITIALIZED",
        "a BillingClient with different options already exists in this process; close() it first",
      );
    }
    this.given = { ...options };
    const o = resolveOptions(options);
    this.o = o;
    const log = this.log.bind(this);
    this.topics = billingTopics(o.topicPrefix);
    this.keySync = new KeySync(this.topics, o, log);
    this.keys = this.keySync.keys;
    this.recordContext = {
      producer: o.clientId,
      maxRecordBytes: o.maxRecordBytes,
      appIdOf: (hash) => this.keys.lookupHash(hash)?.appId ?? "",
    };
    for (const warning of securityWarnings(o)) log("warn", warning);
    this.mqtt311 = new Mqtt311Warning(this.topics.report, o.protocolVersion === 4, log);
    this.ledger = new PendingLedger(o.maxQueued, o.maxQueuedBytes);
    this.pipeline = new SendPipeline({
      ledger: this.ledger,
      retryDelay: (attempts) => backoff(attempts, o.reconnectBaseMs, o.reconnectMaxMs),
      acknowledged: (record) => this.outbox?.acknowledged(record.seq),
      log,
      maxBatchRecords: o.maxBatchRecords,
      maxBatchBytes: o.maxBatchBytes,
      lingerMs: o.lingerMs,
      topic: this.topics.report,
    });
    if (o.spool !== undefined) this.openSpool(o.spool);
    this.heartbeat = new Heartbeat(this.topics.heartbeat, o.clientId, () => this.stats());
    clientSlot.set(this, () => warnAtExit(this.leftAtExit(), log));
    this.heartbeat.start(o.heartbeatIntervalMs, () => this.connection.client);
    this.connection = new Connection(o, {
      will: () => this.heartbeat.will(),
      // MQTT 5: the broker sends nothing larger (a flood of huge key updates never arrives).
      attemptOptions: (v) =>
        v === 5 ? { properties: { maximumPacketSize: maximumPacketSize(o) } } : {},
      check: (connack) => connackProblem(o, this.topics.report, connack),
      up: (client, connack, version) => this.onUp(client, connack, version),
      down: () => {
        this.pipeline.detach();
        log("warn", "connection lost; reconnecting", { queued: this.ledger.pending });
      },
      message: (topic, payload) => this.keySync.onMessage(topic, payload),
      log,
    });
    this.connection.start();
  }

  /** Whether the MQTT connection is up now. */
  isConnected(): boolean {
    return this.connection.client !== undefined;
  }

  /**
   * Resolves once connected. When the client is waiting to retry, it tries at once. Rejects with
   * the cause of the next failed attempt (`NOT_AUTHORIZED`, `TLS`, `UNREACHABLE`, `TIMEOUT`,
   * `PROTOCOL`), with `TIMEOUT` after `timeoutMs`, or `CLOSED`. The client keeps retrying in the
   * background either way. Default `timeoutMs`: `connectTimeoutMs`.
   */
  connect(timeoutMs: number = this.o.connectTimeoutMs): Promise<void> {
    if (this.lifecycle !== "running") return Promise.reject(closedError());
    return badTimeout(timeoutMs) ?? this.connection.connect(timeoutMs);
  }

  /**
   * Accepts one usage record: validates it, stamps it (id, time, key fingerprint, app id,
   * producer) and queues it for publishing. Resolves with the record's id once queued (with a
   * spool: once stored), without waiting for the broker. Rejects with `INVALID_ARGUMENT`,
   * `QUEUE_FULL`, `SPOOL` or `CLOSED`, and then nothing was queued.
   */
  async reportUsage(init: UsageInit | UsageRecord): Promise<string> {
    try {
      if (this.lifecycle !== "running") throw closedError();
      const { id, bytes, apiKeySha256, module, usage } = encodeUsage(init, this.recordContext);
      this.ledger.checkRoom(bytes.length);
      const record: PendingRecord = {
        seq: this.nextSeq++,
        id,
        bytes: Buffer.isBuffer(bytes)
          ? bytes
          : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length),
        attempts: 0,
        losses: 0,
      };
      this.ledger.add(record.seq, bytes.length);
      if (this.outbox === undefined) {
        this.pipeline.enqueue(record);
      } else {
        try {
          await this.outbox.store(record); // queued for publishing once stored
        } catch (err) {
          this.ledger.settle(record.seq, bytes.length);
          throw err;
        }
      }
      debitReported(this.keys, apiKeySha256, module, usage); // quotas, usage rate limits
      return id;
    } catch (err) {
      const code: BillingErrorCode = err instanceof BillingError ? err.code : "INVALID_ARGUMENT";
      this.rejected[code] = (this.rejected[code] ?? 0) + 1;
      throw err;
    }
  }

  /**
   * Resolves once every record accepted **before this call** has been acknowledged by the broker
   * (records accepted meanwhile are not waited for, so it resolves under steady load). Rejects
   * with `TIMEOUT` (saying how many remain, and why when it is known: e.g. no subscriber on the
   * report topic, PUBACK 0x10) after `timeoutMs`. Default `timeoutMs`: `30_000`.
   */
  flush(timeoutMs = 30_000): Promise<void> {
    const flushed =
      badTimeout(timeoutMs) ??
      this.ledger.flush(timeoutMs).catch((err: unknown) => {
        throw this.explained(err);
      });
    this.pipeline.sendLingering(); // after: what flush waits for no longer lingers
    return flushed;
  }

  /**
   * Stops accepting records, waits up to `timeoutMs` for the queued ones to be acknowledged,
   * says goodbye (a `Heartbeat` with state STOPPED) and disconnects cleanly, so the will is not
   * sent. Unregisters the singleton at once. A second call returns the first call's promise.
   * Rejects with `TIMEOUT` when records were still unacknowledged: without a spool they are
   * lost, and logged; with one they stay in it for the next start. Closes the spool.
   * Default `timeoutMs`: `closeTimeoutMs`.
   */
  close(timeoutMs: number = this.o.closeTimeoutMs): Promise<void> {
    if (this.closePromise === undefined) {
      const bad = badTimeout(timeoutMs);
      if (bad !== undefined) return bad;
      this.closePromise = this.doClose(timeoutMs);
    }
    return this.closePromise;
  }

  /** `err` (a `TIMEOUT`) with why records wait, when the pipeline knows. */
  private explained(err: unknown): unknown {
    const why = this.pipeline.cause();
    if (!(err instanceof BillingError) || why === undefined) return err;
    return new BillingError(err.code, `${err.rawMessage}: ${why}`, { cause: err });
  }

  /** Counters and state; cheap enough to poll. */
  stats(): BillingStats {
    return collectStats(this.connection, this.ledger, this.pipeline, this.keySync, this.rejected);
  }

  /**
   * What stays behind if the process exits now. With a spool every record is in it once its
   * group commit ran (after close(), all of them: the outbox is closed by then, and gone).
   */
  private leftAtExit(): LeftAtExit {
    const pending = this.ledger.pending;
    const notStored = this.outbox?.waiting ?? 0;
    const spooled = this.o.spool === undefined ? 0 : pending - notStored;
    return { pending, spooled, closing: this.lifecycle !== "running" };
  }

  private log(level: LogLevel, message: string, fields?: object): void {
    try {
      this.o.logger(level, message, fields as Record<string, unknown> | undefined);
    } catch {
      // a logger that throws must not break billing
    }
  }

  private openSpool(spool: RecordSpool): void {
    const enqueue = (r: PendingRecord) => this.pipeline.enqueue(r);
    const { outbox, left } = SpoolOutbox.open(spool, enqueue, this.log.bind(this));
    this.outbox = outbox;
    for (const r of left) {
      this.ledger.add(r.seq, r.bytes.length);
      enqueue(r);
    }
    this.nextSeq = (left.at(-1)?.seq ?? -1) + 1;
  }

  private onUp(client: MqttClient, connack: IConnackPacket, version: 4 | 5): void {
    this.mqtt311.connected(this.connection.broker, version);
    const limits = connectionLimits(this.o, this.topics.report, connack);
    // A record the broker could never take is refused at reportUsage, not retried forever.
    this.recordContext.maxRecordBytes = limits.maxRecordBytes;
    this.keySync.start(client);
    const { window, batchBytes } = limits;
    this.pipeline.attach(mqttPublishLink(client, this.topics.report, version, window, batchBytes));
  }

  private async doClose(timeoutMs: number): Promise<void> {
    this.lifecycle = "closing";
    clientSlot.clear(this);
    let flushError: unknown;
    await this.flush(timeoutMs).catch((err: unknown) => {
      flushError = err;
    });
    this.lifecycle = "closed";
    this.heartbeat.stop();
    this.keySync.stop();
    this.pipeline.stop();
    await this.connection.close(GOODBYE_MS, (client) => this.heartbeat.goodbye(client));
    const why = this.pipeline.cause();
    if (this.outbox !== undefined) {
      this.outbox.close(why); // nothing is lost: unacknowledged records stay in the spool
      this.outbox = undefined;
      return;
    }
    // PUBACKs that came during the goodbye count: only what is still pending now is lost.
    const lost = this.ledger.pending;
    if (flushError !== undefined && lost > 0) {
      this.log("error", `closed with ${lost} usage records not acknowledged: they are lost`, {
        lost,
      });
      throw new BillingError(
        "TIMEOUT",
        `closed with ${lost} usage records not acknowledged within ${timeoutMs} ms${why === undefined ? "" : `: ${why}`}`,
        { cause: flushError },
      );
    }
  }
}

/** The process-wide `BillingClient`, or undefined when none is open. */
export function getBillingClient(): BillingClient | undefined {
  return clientSlot.get() as BillingClient | undefined;
}
