import type { IConnackPacket, MqttClient } from "mqtt";
import { BillingError } from "../billing-error.js";
import { atMost, withDeadline } from "../common/deadline.js";
import { billingTopics } from "../protocol/topics.js";
import { Connection } from "../publisher/connection.js";
import { brokerList } from "../publisher/options.js";
import { BatchObservers } from "./batch-observers.js";
import {
  type ResolvedConsumerOptions,
  resolveConsumerOptions,
  type UsageConsumerOptions,
} from "./consumer-options.js";
import { DedupeWindow } from "./dedupe-window.js";
import type { Counters, Delivery, Handling } from "./delivery.js";
import { type IncomingMessage, puback, takeOverAcks } from "./manual-acks.js";
import { recordHandling } from "./record-handling.js";
import { type CheckedMessage, checkMessage } from "./record-validation.js";
import { storeHandling } from "./store-handling.js";
import type { UsageConsumer } from "./usage-consumer-api.js";

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
  const o = resolveConsumerOptions(options);
  const c = o.connection;
  const log = c.logger;
  const topic = billingTopics(c.topicPrefix).report;
  const counters: Counters = {
    received: 0,
    records: 0,
    handled: 0,
    duplicates: 0,
    idConflicts: 0,
    rejectedDeliveries: 0,
    rejectedStored: 0,
    failed: 0,
  };
  // Per connection: its QoS 1 deliveries not yet acknowledged, in order, and their packet ids.
  const unacked = new WeakMap<MqttClient, { queue: Delivery[]; ids: Set<number> }>();
  let pending = 0;
  let pendingBytes = 0;
  let held: { client: MqttClient; next: () => void } | undefined;
  let taking = true;
  let subscribed: { resolve(): void; reject(err: BillingError): void } | undefined;
  let warnedNoShare = false;

  const batches = new BatchObservers();
  const ctx = { o, window: new DedupeWindow(o.dedupeWindow), counters, log, batches, done };
  const handling: Handling =
    o.store === undefined
      ? recordHandling(ctx, o.onRecord as NonNullable<ResolvedConsumerOptions["onRecord"]>)
      : storeHandling(ctx, o.store);

  /** A delivery was handled: acknowledge, in order of arrival, what is handled on its connection. */
  function done(d: Delivery): void {
    d.done = true;
    pending--;
    pendingBytes -= d.bytes;
    const u = unacked.get(d.client);
    if (u !== undefined && d.messageId !== undefined) {
      let n = 0;
      while (n < u.queue.length && (u.queue[n] as Delivery).done) n++;
      if (n > 0) {
        const handled = u.queue.splice(0, n);
        for (const h of handled) u.ids.delete(h.messageId as number);
        ack(d.client, handled);
      }
    }
    if (held !== undefined && !full()) {
      const h = held;
      held = undefined;
      if (h.client.connected) h.next();
    }
  }

  // Acknowledgements made in one turn go out in one write per connection.
  const toAck = new Map<MqttClient, number[]>();
  function ack(client: MqttClient, handled: Delivery[]): void {
    if (toAck.size === 0) queueMicrotask(flushAcks);
    const ids = toAck.get(client) ?? [];
    for (const d of handled) ids.push(d.messageId as number);
    toAck.set(client, ids);
  }
  function flushAcks(): void {
    for (const [client, ids] of toAck) puback(client, ids);
    toAck.clear();
  }

  let upAt = 0;
  let quickLosses = 0;
  const takenOver = (why: string) =>
    log(
      "error",
      `another consumer seems to use client id ${c.clientId} and take the session over (${why}): give each consumer its own clientId`,
    );

  const full = () => pending >= o.maxPendingMessages || pendingBytes >= o.maxPendingBytes;

  function receive(client: MqttClient, m: IncomingMessage, next: () => void): void {
    if (!taking && m.messageId !== undefined) {
      next(); // closing: left unacknowledged, for the next session
      return;
    }
    const checked: CheckedMessage =
      m.topic === topic ? check(m.payload) : { records: [], digests: [], rejected: [] };
    if (m.topic === topic) {
      counters.received++;
      counters.records += checked.records.length;
    }
    // A packet id this connection has not acknowledged yet: the broker sent the same message
    // again (NATS does after its ack_wait). Handled again, acknowledged once.
    const u = unacked.get(client);
    const again = m.messageId !== undefined && u?.ids.has(m.messageId) === true;
    const d: Delivery = {
      client,
      messageId: again ? undefined : m.messageId,
      records: checked.records,
      digests: checked.digests,
      rejected: checked.rejected,
      bytes: Math.min(m.payload.length, o.maxMessageBytes),
      left: 0,
      done: false,
    };
    pending++;
    pendingBytes += d.bytes;
    if (d.messageId !== undefined && u !== undefined) {
      u.queue.push(d);
      u.ids.add(d.messageId);
    }
    handling.add(d);
    if (full()) held = { client, next };
    else next();
  }

  /** `checkMessage`, and a message that makes it fail for any reason is rejected whole. */
  function check(payload: Buffer): CheckedMessage {
    try {
      return checkMessage(payload, o.maxMessageBytes);
    } catch (err) {
      const rejected = [{ reason: `cannot be checked: ${String(err)}`, payload }];
      return { records: [], digests: [], rejected };
    }
  }

  function subscribe(client: MqttClient, version: 4 | 5): void {
    // MQTT 3.1.1 has no shared subscription: every consumer then gets every record.
    const shared = o.group !== undefined && version === 5;
    const filter = shared ? `$share/${o.group}/${topic}` : topic;
    if (o.group !== undefined && !shared && !warnedNoShare) {
      warnedNoShare = true;
      log(
        "warn",
        `MQTT 3.1.1: no shared subscription, group ${o.group} is ignored: this consumer receives every record on ${topic}`,
      );
    }
    client.subscribe(filter, { qos: 1 }, (err) => {
      if (err === null || err === undefined) {
        subscribed?.resolve();
        return;
      }
      // Lost with the connection: the next one subscribes again. Else the broker refused it.
      if (!client.connected || client.disconnecting) return;
      const refused = new BillingError(
        "NOT_AUTHORIZED",
        `the broker refused the subscription to ${filter}: ${err.message}`,
        { cause: err },
      );
      if (subscribed !== undefined) subscribed.reject(refused);
      else {
        log("error", refused.message);
        client.end(true); // try again later
      }
    });
  }

  const conn = new Connection(c, {
    attemptOptions: (version) => ({
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
    }),
    prepare: (client) => {
      unacked.set(client, { queue: [], ids: new Set() });
      takeOverAcks(client, (m, next) => receive(client, m, next));
      client.on("disconnect", (packet) => {
        if (packet.reasonCode === 142) takenOver("the broker says so");
      });
    },
    up: (client: MqttClient, connack: IConnackPacket, version: 4 | 5) => {
      upAt = Date.now();
      if (!connack.sessionPresent && conn.reconnects > 0 && o.sessionExpirySeconds > 0) {
        log("warn", "the broker did not keep the session: records sent while away may be lost");
      }
      subscribe(client, version);
    },
    down: () => {
      held = undefined;
      // mosquitto closes the older of two connections with one client id without a word:
      // connections lost right after they were made, again and again, are the sign of it.
      quickLosses = Date.now() - upAt < 5000 ? quickLosses + 1 : 0;
      if (quickLosses === 3) takenOver("connections keep being closed right after they are made");
    },
    message: () => {},
    log,
  });

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      taking = false;
      subscribed?.reject(new BillingError("CLOSED", "the consumer was closed"));
      await atMost(handling.idle(), o.closeTimeoutMs);
      handling.stop();
      await conn.close(Math.min(o.closeTimeoutMs, 5000), async () => {});
    })();
    return closing;
  };

  const ready = (async () => {
    const first = new Promise<void>((resolve, reject) => {
      subscribed = { resolve, reject };
    });
    first.catch(() => {});
    conn.start();
    let lastError: unknown;
    for (let i = 0; i < brokerList(c).length; i++) {
      try {
        await conn.connect(c.connectTimeoutMs + 5000);
        lastError = undefined;
        break;
      } catch (err) {
        lastError = err;
        if ((err as BillingError).code === "CLOSED") break;
      }
    }
    if (lastError !== undefined) throw lastError;
    await withDeadline(first, c.connectTimeoutMs, "no answer to the subscription");
    subscribed = undefined;
  })();
  ready.catch((err: unknown) => {
    subscribed = undefined;
    if (closing === undefined) {
      log("error", `consumer not started: ${(err as Error).message}`);
      void close();
    }
  });

  return {
    ready,
    stats: () => ({
      ...counters,
      rejected: counters.rejectedDeliveries,
      connected: conn.client !== undefined,
      protocolVersion: conn.version,
      pending,
      reconnects: conn.reconnects,
      lagMs: batches.lastLagMs,
    }),
    observeBatches: (observer) => batches.add(observer),
    close,
  };
}
