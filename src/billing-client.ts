import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import type { IClientPublishOptions, IConnackPacket, MqttClient } from "mqtt";
import {
  HeartbeatSchema,
  KeyListRequestSchema,
  KeyUpdateSchema,
  ProducerState,
  type UsageRecord,
} from "../gen/billing/v1/usage_pb.js";
import {
  type BillingClientOptions,
  type BrokerAddress,
  type ResolvedOptions,
  resolveOptions,
  sameOptions,
} from "./billing-client-options.js";
import { BillingError } from "./billing-error.js";
import { connectOnce, discard } from "./connect-once.js";
import { KeyList } from "./key-list.js";
import { type PendingRecord, RecordQueue } from "./record-queue.js";
import { SpoolOutbox } from "./spool-outbox.js";
import { isUnsupportedProtocol } from "./to-billing-error.js";
import { type BillingTopics, billingTopics } from "./topics.js";
import { encodeUsage, type RecordContext, type UsageInit } from "./usage-input.js";

/** Counters and state of a `BillingClient`, from `client.stats()`. */
export interface BillingStats {
  /** Whether the MQTT connection is up now. */
  connected: boolean;
  /** The MQTT version in use (5, or 4 after falling back to 3.1.1). */
  protocolVersion: 4 | 5;
  /** The broker of the current (or next) connection, `host:port`. */
  broker: string;
  /** Records accepted and not yet acknowledged (waiting, in flight or waiting to retry). */
  queued: number;
  /** Records published and waiting for their PUBACK. */
  inFlight: number;
  /** Records waiting out a delay after the broker refused them (PUBACK reason code ≥ 0x80). */
  retrying: number;
  /** Records acknowledged by the broker. */
  published: number;
  /** Failed publish attempts (refused by the broker, or cut off by a disconnect); all retried. */
  failed: number;
  /** `reportUsage` calls refused: invalid input, `QUEUE_FULL`, `CLOSED`. */
  rejected: number;
  /** Connections made after the first one. */
  reconnects: number;
  /** Keys in the key list. */
  keysKnown: number;
  /** Whether a key-list snapshot has arrived. */
  keysLoaded: boolean;
  /** Key updates applied. */
  keyUpdates: number;
  /** Key-update payloads that could not be decoded (ignored; the list stayed as it was). */
  keyDecodeErrors: number;
}

interface Waiter {
  resolve: () => void;
  reject: (err: BillingError) => void;
}

type Lifecycle = "running" | "closing" | "closed";

const INSTANCE = Symbol.for("billing-sdk.BillingClient");
const registry = globalThis as { [INSTANCE]?: BillingClient };

/** The process-wide `BillingClient`, or undefined when none is open. */
export function getBillingClient(): BillingClient | undefined {
  return registry[INSTANCE];
}

const PUBLISH_V4: IClientPublishOptions = { qos: 1 };
// MQTT 5 lets consumers see what a payload is without knowing the topic.
const PUBLISH_V5: IClientPublishOptions = {
  qos: 1,
  properties: {
    contentType: "application/x-protobuf",
    userProperties: { "message-type": "billing.v1.UsageRecord" },
  },
};

const GOODBYE_MS = 2000;

/** Runs `start(done)` and resolves when it calls `done`, or after `ms`, whichever is first. */
function withDeadline(ms: number, start: (done: () => void) => void): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    start(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

const brokerName = (b: BrokerAddress) => `${b.host}:${b.port}`;

/** Connection losses with a record in flight after which it is sent alone, as a suspect. */
const SUSPECT_AFTER_LOSSES = 3;

function backoff(attempt: number, baseMs: number, maxMs: number): number {
  // Capped exponential with "equal jitter": half fixed, half random, so that many clients
  // restarted together do not reconnect in lockstep.
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/**
 * The process-wide billing connection: publishes `UsageRecord`s at QoS 1 and keeps the API-key
 * list the backend pushes. Constructing registers the instance; constructing again with equal
 * options returns it, with different options throws `ALREADY_INITIALIZED`; `close()` unregisters.
 */
export class BillingClient {
  /** The API-key list pushed by the billing backend. */
  readonly keys!: KeyList;
  /** The topics in use. */
  readonly topics!: BillingTopics;
  private readonly given!: BillingClientOptions;
  private readonly o!: ResolvedOptions;
  private lifecycle: Lifecycle = "running";
  private closePromise: Promise<void> | undefined;

  private conn: MqttClient | undefined;
  private attempting: MqttClient | undefined;
  private version!: 4 | 5;
  private windowCap!: number;
  private everConnected = false;
  private failedAttempts = 0;
  private brokerIndex = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private connectWaiters = new Set<Waiter>();
  private flushWaiters = new Set<Waiter>();

  private readonly queue = new RecordQueue();
  private readonly inFlight = new Map<number, PendingRecord>();
  private delayed: Array<{ record: PendingRecord; dueAt: number }> = [];
  private retryTimer: NodeJS.Timeout | undefined;
  private soloInFlight = false;
  private nextSeq = 0;
  /** The durable outbox, when `spool` is set. */
  private outbox: SpoolOutbox | undefined;
  private publishOptions: IClientPublishOptions = { qos: 1 };
  private recordContext!: RecordContext;

  private counters = {
    published: 0,
    failed: 0,
    rejected: 0,
    reconnects: 0,
    keyUpdates: 0,
    keyDecodeErrors: 0,
  };

  constructor(options: BillingClientOptions = {}) {
    const existing = registry[INSTANCE];
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
    this.o = resolveOptions(options);
    this.version = this.o.protocolVersion;
    this.windowCap = this.o.inFlightWindow;
    this.topics = billingTopics(this.o.topicPrefix);
    this.keys = new KeyList((err) =>
      this.log("error", "a key-list listener threw; the other listeners still ran", { err }),
    );
    this.recordContext = {
      producer: this.o.clientId,
      maxRecordBytes: this.o.maxRecordBytes,
      appIdOf: (hash: string) => this.keys.lookupHash(hash)?.appId ?? "",
    };
    if (this.o.tls && this.o.dangerouslyDisableTlsVerification) {
      this.log(
        "warn",
        "TLS certificate verification is OFF (dangerouslyDisableTlsVerification): anyone on the " +
          "network path can read and forge billing traffic. Never use this in production.",
      );
    }
    if (this.o.spool !== undefined) this.openSpool(this.o.spool);
    registry[INSTANCE] = this;
    if (this.o.heartbeatIntervalMs > 0) {
      this.heartbeatTimer = setInterval(() => this.heartbeat(), this.o.heartbeatIntervalMs);
      this.heartbeatTimer.unref();
    }
    this.attempt();
  }

  /** Whether the MQTT connection is up now. */
  isConnected(): boolean {
    return this.conn?.connected === true;
  }

  /**
   * Resolves once connected. When the client is waiting to retry, it tries at once. Rejects with
   * the cause of the next failed attempt (`NOT_AUTHORIZED`, `TLS`, `UNREACHABLE`, `TIMEOUT`,
   * `PROTOCOL`), with `TIMEOUT` after `timeoutMs`, or `CLOSED`. The client keeps retrying in the
   * background either way. Default `timeoutMs`: `connectTimeoutMs`.
   */
  connect(timeoutMs: number = this.o.connectTimeoutMs): Promise<void> {
    if (this.lifecycle !== "running") return Promise.reject(this.closedError());
    if (this.isConnected()) return Promise.resolve();
    if (this.reconnectTimer !== undefined) {
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = undefined;
      this.attempt();
    }
    return this.wait(this.connectWaiters, timeoutMs, () => "not connected");
  }

  /**
   * Accepts one usage record: validates it, stamps it (id, time, key fingerprint, app id,
   * producer) and queues it for publishing. Resolves with the record's id once queued, without
   * waiting for the broker. Rejects with `INVALID_ARGUMENT`, `QUEUE_FULL` or `CLOSED`, and then
   * nothing was queued.
   */
  async reportUsage(init: UsageInit | UsageRecord): Promise<string> {
    try {
      if (this.lifecycle !== "running") throw this.closedError();
      const encoded = encodeUsage(init, this.recordContext);
      if (this.pending() >= this.o.maxQueued) {
        throw new BillingError(
          "QUEUE_FULL",
          `${this.pending()} records are waiting for the broker (maxQueued); record refused`,
        );
      }
      const record: PendingRecord = {
        seq: this.nextSeq++,
        id: encoded.id,
        bytes: Buffer.from(encoded.bytes.buffer, encoded.bytes.byteOffset, encoded.bytes.length),
        attempts: 0,
      };
      if (this.outbox !== undefined) {
        await this.outbox.store(record); // queued for publishing once stored
      } else {
        this.queue.push(record);
        this.pump();
      }
      return encoded.id;
    } catch (err) {
      this.counters.rejected++;
      this.settleFlush(); // a record the spool refused no longer counts as pending
      throw err;
    }
  }

  /**
   * Resolves when every accepted record has been acknowledged by the broker. Rejects with
   * `TIMEOUT` (saying how many remain) after `timeoutMs`. Default `timeoutMs`: `30_000`.
   */
  flush(timeoutMs = 30_000): Promise<void> {
    if (this.pending() === 0) return Promise.resolve();
    return this.wait(
      this.flushWaiters,
      timeoutMs,
      () => `${this.pending()} records not yet acknowledged`,
    );
  }

  /**
   * Stops accepting records, waits up to `timeoutMs` for the queued ones to be acknowledged,
   * says goodbye (a `Heartbeat` with state STOPPED) and disconnects cleanly, so the will is not
   * sent. Unregisters the singleton at once. A second call returns the first call's promise.
   * Rejects with `TIMEOUT` when records were still unacknowledged: they are lost, and logged.
   * Default `timeoutMs`: `closeTimeoutMs`.
   */
  close(timeoutMs: number = this.o.closeTimeoutMs): Promise<void> {
    this.closePromise ??= this.doClose(timeoutMs);
    return this.closePromise;
  }

  /** Counters and state; cheap enough to poll. */
  stats(): BillingStats {
    return {
      connected: this.isConnected(),
      protocolVersion: this.version,
      broker: brokerName(this.currentTarget()),
      queued: this.pending(),
      inFlight: this.inFlight.size,
      retrying: this.delayed.length,
      published: this.counters.published,
      failed: this.counters.failed,
      rejected: this.counters.rejected,
      reconnects: this.counters.reconnects,
      keysKnown: this.keys.size,
      keysLoaded: this.keys.loaded,
      keyUpdates: this.counters.keyUpdates,
      keyDecodeErrors: this.counters.keyDecodeErrors,
    };
  }

  private currentTarget(): BrokerAddress {
    const all = [{ host: this.o.brokerHost, port: this.o.brokerPort }, ...this.o.fallbackBrokers];
    return all[this.brokerIndex % all.length] as BrokerAddress;
  }

  private pending(): number {
    const storing = this.outbox?.waiting ?? 0;
    return this.queue.length + this.inFlight.size + this.delayed.length + storing;
  }

  // ---- spool --------------------------------------------------------------------------------

  private openSpool(option: NonNullable<ResolvedOptions["spool"]>): void {
    const { outbox, left } = SpoolOutbox.open(
      option,
      (stored) => {
        for (const r of stored) this.queue.push(r);
        this.pump();
      },
      (level, message, fields) => this.log(level, message, fields),
    );
    this.outbox = outbox;
    for (const r of left) this.queue.push(r);
    this.nextSeq = (left.at(-1)?.seq ?? -1) + 1;
    if (left.length > 0) {
      this.log("info", `${left.length} records from an earlier run are queued first`, {
        records: left.length,
      });
    }
  }

  private closedError(): BillingError {
    return new BillingError("CLOSED", "the BillingClient is closed");
  }

  private log(level: "debug" | "info" | "warn" | "error", msg: string, fields?: object) {
    try {
      this.o.logger(level, msg, fields as Record<string, unknown>);
    } catch {
      // a logger that throws must not break billing
    }
  }

  private wait(set: Set<Waiter>, timeoutMs: number, what: () => string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        set.delete(waiter);
        reject(new BillingError("TIMEOUT", `${what()} after ${timeoutMs} ms`));
      }, timeoutMs);
      // Not unref'ed: someone awaits this deadline (connect, flush, close), and the process must
      // live to see it settle, or `await client.close()` would end in silence.
      const waiter: Waiter = {
        resolve: () => {
          clearTimeout(timer);
          set.delete(waiter);
          resolve();
        },
        reject: (err) => {
          clearTimeout(timer);
          set.delete(waiter);
          reject(err);
        },
      };
      set.add(waiter);
    });
  }

  // ---- connection ---------------------------------------------------------------------------

  private willPayload(state: ProducerState): Buffer {
    const s = this.stats();
    return Buffer.from(
      toBinary(
        HeartbeatSchema,
        create(HeartbeatSchema, {
          producer: this.o.clientId,
          sentAt: timestampNow(),
          queued: BigInt(s.queued),
          inFlight: BigInt(s.inFlight),
          published: BigInt(s.published),
          failed: BigInt(s.failed),
          rejected: BigInt(s.rejected),
          reconnects: BigInt(s.reconnects),
          state,
        }),
      ),
    );
  }

  private attempt(): void {
    if (this.lifecycle === "closed" || this.conn !== undefined || this.attempting !== undefined) {
      return;
    }
    const version = this.version;
    const will = { topic: this.topics.heartbeat, payload: this.willPayload(ProducerState.LOST) };
    // Failover: each attempt goes to the next broker of the list, round robin.
    const brokers = [
      { host: this.o.brokerHost, port: this.o.brokerPort },
      ...this.o.fallbackBrokers,
    ];
    const target = brokers[this.brokerIndex % brokers.length] as { host: string; port: number };
    const o = { ...this.o, brokerHost: target.host, brokerPort: target.port };
    connectOnce(o, version, will, (c) => {
      this.attempting = c;
    }).then(
      ({ client, connack }) => {
        this.attempting = undefined;
        if (this.lifecycle === "closed") {
          discard(client);
          return;
        }
        this.onConnected(client, connack);
      },
      (err: BillingError) => {
        this.attempting = undefined;
        if (this.lifecycle === "closed") return;
        if (version === 5 && isUnsupportedProtocol(err.cause)) {
          this.log("info", "the broker refused MQTT 5; using MQTT 3.1.1 from now on");
          this.version = 4;
          this.attempt();
          return;
        }
        this.log("warn", `connection attempt failed: ${err.message}`, { code: err.code });
        this.brokerIndex++;
        for (const w of this.connectWaiters) w.reject(err);
        this.scheduleReconnect();
      },
    );
  }

  private scheduleReconnect(): void {
    if (this.lifecycle === "closed" || this.reconnectTimer !== undefined) return;
    const delay = backoff(this.failedAttempts++, this.o.reconnectBaseMs, this.o.reconnectMaxMs);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.attempt();
    }, delay);
    this.reconnectTimer.unref();
  }

  private onConnected(client: MqttClient, connack: IConnackPacket): void {
    this.conn = client;
    this.failedAttempts = 0;
    if (this.everConnected) this.counters.reconnects++;
    this.everConnected = true;
    // MQTT 5 flow control: never have more unacknowledged QoS 1 publishes than the broker allows.
    const receiveMaximum = connack.properties?.receiveMaximum ?? 65535;
    this.windowCap = Math.min(this.o.inFlightWindow, receiveMaximum);
    // A record the broker could never take is refused at reportUsage, not retried forever.
    const maxPacket = connack.properties?.maximumPacketSize;
    this.recordContext.maxRecordBytes =
      maxPacket === undefined
        ? this.o.maxRecordBytes
        : Math.min(this.o.maxRecordBytes, maxPacket - this.topics.report.length - 64);
    this.publishOptions = this.version === 5 ? PUBLISH_V5 : PUBLISH_V4;
    client.on("error", (err) => {
      // mqtt.js reports fatal trouble on a live connection here (a packet it cannot parse, a
      // protocol error) and may leave the socket open but useless: drop it and reconnect.
      this.log("warn", `connection error: ${err.message}`);
      this.onConnectionLost(client);
    });
    client.on("close", () => this.onConnectionLost(client));
    client.on("message", (topic, payload) => this.onMessage(topic, payload));
    this.log("info", `connected (MQTT ${this.version === 5 ? "5" : "3.1.1"})`);
    client.subscribe(this.topics.keysUpdate, { qos: 1 }, (err) => {
      if (err) {
        this.log("error", `subscribing to ${this.topics.keysUpdate} failed: ${err.message}`);
        return;
      }
      const request = create(KeyListRequestSchema, {
        producer: this.o.clientId,
        sentAt: timestampNow(),
      });
      client.publish(
        this.topics.keysRequest,
        Buffer.from(toBinary(KeyListRequestSchema, request)),
        { qos: 1 },
        (e) => {
          if (e) this.log("warn", `key-list request failed: ${e.message}`);
        },
      );
    });
    for (const w of this.connectWaiters) w.resolve();
    this.pump();
  }

  private onConnectionLost(client: MqttClient): void {
    if (this.conn !== client) return;
    this.conn = undefined;
    discard(client);
    // Records cut off in flight go back in order; they are sent again with the same id.
    // A record may itself be why the broker drops us (mosquitto answers one over its
    // message_size_limit with a PUBACK code mqtt.js cannot parse). So a record in flight at
    // SUSPECT_AFTER_LOSSES losses is next sent alone; if the connection drops while it is alone,
    // it is the cause: it waits out a growing delay, apart, and cannot block the others forever.
    const back: PendingRecord[] = [];
    for (const record of this.inFlight.values()) {
      this.counters.failed++;
      record.attempts++;
      if (this.soloInFlight) {
        this.retryLater(record, "the connection dropped while it was the only record in flight");
      } else {
        back.push(record);
      }
    }
    this.soloInFlight = false;
    this.inFlight.clear();
    this.queue.returnToFront(back);
    if (this.lifecycle === "closed") return;
    this.log("warn", "connection lost; reconnecting", { queued: this.pending() });
    this.scheduleReconnect();
  }

  private onMessage(topic: string, payload: Buffer): void {
    if (topic !== this.topics.keysUpdate) return;
    let update: ReturnType<typeof fromBinary<typeof KeyUpdateSchema>>;
    try {
      update = fromBinary(KeyUpdateSchema, payload);
    } catch (err) {
      this.counters.keyDecodeErrors++;
      this.log("warn", `ignored a key update that does not decode (${payload.length} bytes)`, {
        error: (err as Error).message,
      });
      return;
    }
    const changes = this.keys.apply(update);
    this.counters.keyUpdates++;
    this.log("debug", `key update applied (${update.snapshot ? "snapshot" : "delta"})`, {
      changed: changes.length,
      known: this.keys.size,
    });
  }

  // ---- publishing ---------------------------------------------------------------------------

  private pump(): void {
    const client = this.conn;
    if (client === undefined || !client.connected) return;
    let corked = false;
    while (this.inFlight.size < this.windowCap && !this.soloInFlight) {
      const next = this.queue.peek();
      if (next === undefined) break;
      if (next.attempts >= SUSPECT_AFTER_LOSSES) {
        // A suspect goes out alone, once the window is empty (see onConnectionLost).
        if (this.inFlight.size > 0) break;
        this.soloInFlight = true;
      }
      const record = this.queue.shift() as PendingRecord;
      if (!corked) {
        // Publishes made in this tick (a burst of reportUsage calls, or of PUBACKs read in one
        // chunk) leave in one write: one syscall for many packets instead of several per packet.
        corked = true;
        const stream = client.stream;
        stream.cork();
        process.nextTick(() => stream.uncork());
      }
      this.inFlight.set(record.seq, record);
      client.publish(this.topics.report, record.bytes, this.publishOptions, (err) =>
        this.onPublished(client, record, err),
      );
    }
  }

  private onPublished(
    client: MqttClient,
    record: PendingRecord,
    err: Error | null | undefined,
  ): void {
    // A callback from a connection already given up on: its record was put back in the queue.
    if (client !== this.conn || this.inFlight.get(record.seq) !== record) return;
    this.inFlight.delete(record.seq);
    this.soloInFlight = false;
    if (!err) {
      this.counters.published++;
      this.outbox?.acknowledged(record.seq);
    } else {
      this.counters.failed++;
      record.attempts++;
      const reason = (err as { code?: unknown }).code;
      if (typeof reason === "number") {
        // The broker refused this record (PUBACK reason code >= 0x80). Retry it after a delay,
        // without holding up the records behind it.
        this.retryLater(record, `PUBACK reason code ${reason}`);
      } else if (client.connected) {
        // Refused by mqtt.js itself while the connection is up (e.g. larger than the broker's
        // maximum packet size): a problem of this record, retried later like a refusal.
        this.retryLater(record, err.message);
      } else {
        this.queue.returnToFront([record]);
        return; // the connection is going down; onConnectionLost reconnects
      }
    }
    this.pump();
    this.settleFlush();
  }

  private retryLater(record: PendingRecord, why: string): void {
    const delay = backoff(record.attempts, this.o.reconnectBaseMs, this.o.reconnectMaxMs);
    this.log("warn", `record ${record.id} was refused (${why}); retrying it later`, {
      attempts: record.attempts,
      delayMs: Math.round(delay),
    });
    this.delayed.push({ record, dueAt: Date.now() + delay });
    this.armRetry();
  }

  private armRetry(): void {
    if (this.retryTimer !== undefined || this.delayed.length === 0) return;
    const next = Math.min(...this.delayed.map((d) => d.dueAt));
    this.retryTimer = setTimeout(
      () => {
        this.retryTimer = undefined;
        const now = Date.now();
        const due = this.delayed.filter((d) => d.dueAt <= now);
        this.delayed = this.delayed.filter((d) => d.dueAt > now);
        this.queue.returnToFront(due.map((d) => d.record));
        this.armRetry();
        this.pump();
      },
      Math.max(0, next - Date.now()),
    );
    this.retryTimer.unref();
  }

  private settleFlush(): void {
    if (this.pending() === 0) for (const w of this.flushWaiters) w.resolve();
  }

  private heartbeat(): void {
    const client = this.conn;
    if (client === undefined || !client.connected) return;
    client.publish(this.topics.heartbeat, this.willPayload(ProducerState.RUNNING), { qos: 0 });
  }

  // ---- closing ------------------------------------------------------------------------------

  private async doClose(timeoutMs: number): Promise<void> {
    this.lifecycle = "closing";
    if (registry[INSTANCE] === this) delete registry[INSTANCE];
    let flushError: BillingError | undefined;
    try {
      await this.flush(timeoutMs);
    } catch (err) {
      flushError = err as BillingError;
    }
    this.lifecycle = "closed";
    clearInterval(this.heartbeatTimer);
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.retryTimer);
    this.reconnectTimer = undefined;
    if (this.attempting !== undefined) discard(this.attempting);
    for (const w of this.connectWaiters) w.reject(this.closedError());
    const client = this.conn;
    if (client?.connected) {
      // Goodbye, then DISCONNECT (so the broker drops the will); bounded, as the broker may be
      // gone without our having noticed yet.
      await withDeadline(GOODBYE_MS, (done) => {
        client.publish(
          this.topics.heartbeat,
          this.willPayload(ProducerState.STOPPED),
          { qos: 0 },
          () => client.end(false, {}, done),
        );
      });
    }
    if (client !== undefined) discard(client);
    this.conn = undefined;
    const outbox = this.outbox;
    if (outbox !== undefined) {
      this.outbox = undefined;
      const kept = outbox.close(); // stores what waits, forgets what was acknowledged
      if (kept > 0) {
        this.log("warn", `${kept} records stay in the spool and go out at the next start`, {
          kept,
        });
      }
      return; // nothing is lost: unacknowledged records are in the spool
    }
    if (flushError !== undefined) {
      const lost = this.pending();
      this.log("error", `closed with ${lost} usage records not acknowledged: they are lost`, {
        lost,
      });
      throw new BillingError(
        "TIMEOUT",
        `closed with ${lost} usage records not acknowledged within ${timeoutMs} ms`,
        { cause: flushError },
      );
    }
  }
}
