import type { MqttClient } from "mqtt";
import type { Delivery } from "./delivery.js";
import { puback } from "./manual-acks.js";

/**
 * The QoS 1 deliveries of each connection not yet acknowledged, in order of arrival, and their
 * packet ids. A delivery is acknowledged once it and every one before it on its connection were
 * handled; acknowledgements made in one turn go out in one write per connection.
 */
export class AckLedger {
  private readonly unacked = new WeakMap<MqttClient, { queue: Delivery[]; ids: Set<number> }>();
  private readonly toAck = new Map<MqttClient, number[]>();

  /** A new connection: nothing is waiting for an acknowledgement on it. */
  open(client: MqttClient): void {
    this.unacked.set(client, { queue: [], ids: new Set() });
  }

  /**
   * Whether `messageId` is a packet id `client` has not acknowledged yet: the broker sent the
   * same message again (NATS does after its ack_wait).
   */
  unacknowledged(client: MqttClient, messageId: number | undefined): boolean {
    return messageId !== undefined && this.unacked.get(client)?.ids.has(messageId) === true;
  }

  /** Keeps `d` to acknowledge in its turn (a delivery without a packet id needs none). */
  track(d: Delivery): void {
    const u = this.unacked.get(d.client);
    if (d.messageId !== undefined && u !== undefined) {
      u.queue.push(d);
      u.ids.add(d.messageId);
    }
  }

  /** `d` was handled: acknowledges, in order of arrival, what is handled on its connection. */
  handled(d: Delivery): void {
    const u = this.unacked.get(d.client);
    if (u === undefined || d.messageId === undefined) return;
    let n = 0;
    while (n < u.queue.length && (u.queue[n] as Delivery).done) n++;
    if (n === 0) return;
    const handled = u.queue.splice(0, n);
    for (const h of handled) u.ids.delete(h.messageId as number);
    if (this.toAck.size === 0) queueMicrotask(() => this.flush());
    const ids = this.toAck.get(d.client) ?? [];
    for (const h of handled) ids.push(h.messageId as number);
    this.toAck.set(d.client, ids);
  }

  private flush(): void {
    for (const [client, ids] of this.toAck) puback(client, ids);
    this.toAck.clear();
  }
}
