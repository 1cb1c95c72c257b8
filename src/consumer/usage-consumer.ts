import type { IClientOptions, IConnackPacket, MqttClient } from "mqtt";
import { BillingError } from "../billing-error.js";
import { atMost, withDeadline } from "../common/deadline.js";
import type { BillingLogger } from "../common/logger.js";
import { Connection } from "../mqtt/connection.js";
import { brokerList } from "../mqtt/connection-options.js";
import { billingTopics } from "../protocol/topics.js";
import { AckLedger } from "./ack-ledger.js";
import { BatchObservers } from "./batch-observers.js";
import {
  type ResolvedConsumerOptions,
  resolveConsumerOptions,
  type UsageConsumerOptions,
} from "./consumer-options.js";
import { DedupeWindow } from "./dedupe-window.js";
import type { Counters, Delivery, Handling } from "./delivery.js";
import { type IncomingMessage, takeOverAcks } from "./manual-acks.js";
import { recordHandling } from "./record-handling.js";
import { type CheckedMessage, checkMessage } from "./record-validation.js";
import { storeHandling } from "./store-handling.js";
import type { UsageConsumer, UsageConsumerStats } from "./usage-consumer-api.js";

/**
 * The backend's side of billing: subscribes to `<prefix>/report` with a persistent session
 * (`clean: false`, a stable client id, a session expiry) and, on MQTT 5, a shared subscription;
 * decodes and validates each record; hands records in batches to a `store` (or one by one to
 * `onRecord`) and acknowledges a message only once all its records are durably handled. A
 * failure leaves it unacknowledged and it is handled again; a crash leaves it to the broker,
 * which delivers it again. Records that cannot be billed are passed on as rejected, counted and
 * acknowledged. With a store that dedupes on `id`, each record is counted exactly once.
 */
export function createUsageConsumer(options: UsageConsumerOptions): UsageConsumer {
  const consumer = new Consumer(resolveConsumerOptions(options));
  return {
    ready: consumer.ready,
    stats: () => consumer.stats(),
    observeBatches: (observer) => consumer.batches.add(observer),
    close: () => consumer.close(),
  };
}

/** One consumer: its connection, what it holds unacknowledged, and its way of handling. */
class Consumer {
  readonly batches = new BatchObservers();
  readonly ready: Promise<void>;
  private readonly c: ResolvedConsumerOptions["connection"];
  private readonly log: BillingLogger;
  private readonly topic: string;
  private readonly counters: Counters = {
    received: 0,
    records: 0,
    handled: 0,
    duplicates: 0,
    idConflicts: 0,
    rejectedDeliveries: 0,
    rejectedStored: 0,
    failed: 0,
  };
  private readonly acks = new AckLedger();
  private readonly handling: Handling;
  private readonly conn: Connection;
  private pending = 0;
  private pendingBytes = 0;
  /** The connection whose reading paused (pending past a bound), and how to resume it. */
  private held: { client: MqttClient; next: () => void } | undefined;
  private taking = true;
  /** The first subscription's outcome, awaited by `ready`. */
  private subscribed: { resolve(): void; reject(err: BillingError): void } | undefined;
  private warnedNoShare = false;
  private upAt = 0;
  private quickLosses = 0;
  private closing: Promise<void> | undefined;

  constructor(private readonly o: ResolvedConsumerOptions) {
    this.c = o.connection;
    this.log = this.c.logger;
    this.topic = billingTopics(this.c.topicPrefix).report;
    const ctx = {
      o,
      window: new DedupeWindow(o.dedupeWindow),
      counters: this.counters,
      log: this.log,
      batches: this.batches,
      done: (d: Delivery) => this.done(d),
    };
    this.handling =
      o.store === undefined
        ? recordHandling(ctx, o.onRecord as NonNullable<ResolvedConsumerOptions["onRecord"]>)
        : storeHandling(ctx, o.store);
    this.conn = new Connection(this.c, {
      attemptOptions: (version) => this.attemptOptions(version),
      prepare: (client) => this.prepare(client),
      up: (client, connack, version) => this.up(client, connack, version),
      down: () => this.down(),
      message: () => {},
      log: this.log,
    });
    this.ready = this.start();
    this.ready.catch((err: unknown) => {
      this.subscribed = undefined;
      if (this.closing === undefined) {
        this.log("error", `consumer not started: ${(err as Error).message}`);
        void this.close();
      }
    });
  }

  stats(): UsageConsumerStats {
    return {
      ...this.counters,
      rejected: this.counters.rejectedDeliveries,
      connected: this.conn.client !== undefined,
      protocolVersion: this.conn.version,
      pending: this.pending,
      reconnects: this.conn.reconnects,
      lagMs: this.batches.lastLagMs,
    };
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.taking = false;
      this.subscribed?.reject(new BillingError("CLOSED", "the consumer was closed"));
      await atMost(this.handling.idle(), this.o.closeTimeoutMs);
      this.handling.stop();
      await this.conn.close(Math.min(this.o.closeTimeoutMs, 5000), async () => {});
    })();
    return this.closing;
  }

  /** Connects (trying each broker once) and subscribes: what `ready` waits for. */
  private async start(): Promise<void> {
    const first = new Promise<void>((resolve, reject) => {
      this.subscribed = { resolve, reject };
    });
    first.catch(() => {});
    this.conn.start();
    let lastError: unknown;
    for (let i = 0; i < brokerList(this.c).length; i++) {
      try {
        await this.conn.connect(this.c.connectTimeoutMs + 5000);
        lastError = undefined;
        break;
      } catch (err) {
        lastError = err;
        if ((err as BillingError).code === "CLOSED") break;
      }
    }
    if (lastError !== undefined) throw lastError;
    await withDeadline(first, this.c.connectTimeoutMs, "no answer to the subscription");
    this.subscribed = undefined;
  }

  private full(): boolean {
    return this.pending >= this.o.maxPendingMessages || this.pendingBytes >= this.o.maxPendingBytes;
  }

  /** A delivery was handled: acknowledge what it completes, and resume reading if it paused. */
  private done(d: Delivery): void {
    d.done = true;
    this.pending--;
    this.pendingBytes -= d.bytes;
    this.acks.handled(d);
    if (this.held !== undefined && !this.full()) {
      const h = this.held;
      this.held = undefined;
      if (h.client.connected) h.next();
    }
  }

  private receive(client: MqttClient, m: IncomingMessage, next: () => void): void {
    if (!this.taking && m.messageId !== undefined) {
      next(); // closing: left unacknowledged, for the next session
      return;
    }
    const ours = m.topic === this.topic;
    const checked: CheckedMessage = ours
      ? this.check(m.payload)
      : { records: [], digests: [], rejected: [] };
    if (ours) {
      this.counters.received++;
      this.counters.records += checked.records.length;
    }
    // A packet id this connection has not acknowledged yet: the broker sent the same message
    // again. Handled again, acknowledged once.
    const again = this.acks.unacknowledged(client, m.messageId);
    const d: Delivery = {
      client,
      messageId: again ? undefined : m.messageId,
      records: checked.records,
      digests: checked.digests,
      rejected: checked.rejected,
      bytes: Math.min(m.payload.length, this.o.maxMessageBytes),
      left: 0,
      done: false,
    };
    this.pending++;
    this.pendingBytes += d.bytes;
    this.acks.track(d);
    this.handling.add(d);
    if (this.full()) this.held = { client, next };
    else next();
  }

  /** `checkMessage`, and a message that makes it fail for any reason is rejected whole. */
  private check(payload: Buffer): CheckedMessage {
    try {
      return checkMessage(payload, this.o.maxMessageBytes);
    } catch (err) {
      const rejected = [{ reason: `cannot be checked: ${String(err)}`, payload }];
      return { records: [], digests: [], rejected };
    }
  }

  /** The persistent session of an attempt at `version`. */
  private attemptOptions(version: 4 | 5): Partial<IClientOptions> {
    const o = this.o;
    return {
      // A session that ends at disconnect is, in MQTT 3.1.1, a clean one.
      clean: version === 4 && o.sessionExpirySeconds === 0,
      ...(version === 5
        ? {
            properties: {
              sessionExpiryInterval: o.sessionExpirySeconds,
              receiveMaximum: o.maxPendingMessages,
              // The broker sends nothing larger (room for the topic and properties).
              maximumPacketSize: o.maxMessageBytes + 4096,
            },
          }
        : {}),
    };
  }

  private prepare(client: MqttClient): void {
    this.acks.open(client);
    takeOverAcks(client, (m, next) => this.receive(client, m, next));
    client.on("disconnect", (packet) => {
      if (packet.reasonCode === 142) this.takenOver("the broker says so");
    });
  }

  private up(client: MqttClient, connack: IConnackPacket, version: 4 | 5): void {
    this.upAt = Date.now();
    if (!connack.sessionPresent && this.conn.reconnects > 0 && this.o.sessionExpirySeconds > 0) {
      this.log("warn", "the broker did not keep the session: records sent while away may be lost");
    }
    this.subscribe(client, version);
  }

  private down(): void {
    this.held = undefined;
    // mosquitto closes the older of two connections with one client id without a word:
    // connections lost right after they were made, again and again, are the sign of it.
    this.quickLosses = Date.now() - this.upAt < 5000 ? this.quickLosses + 1 : 0;
    if (this.quickLosses === 3) {
      this.takenOver("connections keep being closed right after they are made");
    }
  }

  private takenOver(why: string): void {
    this.log(
      "error",
      `another consumer seems to use client id ${this.c.clientId} and take the session over (${why}): give each consumer its own clientId`,
    );
  }

  private subscribe(client: MqttClient, version: 4 | 5): void {
    const { group } = this.o;
    // MQTT 3.1.1 has no shared subscription: every consumer then gets every record.
    const shared = group !== undefined && version === 5;
    const filter = shared ? `$share/${group}/${this.topic}` : this.topic;
    if (group !== undefined && !shared && !this.warnedNoShare) {
      this.warnedNoShare = true;
      this.log(
        "warn",
        `MQTT 3.1.1: no shared subscription, group ${group} is ignored: this consumer receives every record on ${this.topic}`,
      );
    }
    client.subscribe(filter, { qos: 1 }, (err) => {
      if (err === null || err === undefined) {
        this.subscribed?.resolve();
        return;
      }
      // Lost with the connection: the next one subscribes again. Else the broker refused it.
      if (!client.connected || client.disconnecting) return;
      const refused = new BillingError(
        "NOT_AUTHORIZED",
        `the broker refused the subscription to ${filter}: ${err.message}`,
        { cause: err },
      );
      if (this.subscribed !== undefined) this.subscribed.reject(refused);
      else {
        this.log("error", refused.message);
        client.end(true); // try again later
      }
    });
  }
}
