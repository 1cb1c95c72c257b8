import type { MqttClient } from "mqtt";
import { ProducerState } from "../../../gen/billing/v1/usage_pb.js";
import { type HeartbeatCounters, heartbeatPayload } from "../producer-messages.js";

/**
 * The publisher's liveness signal on `<prefix>/heartbeat`: a `Heartbeat` (RUNNING) every
 * `intervalMs` at QoS 0 while connected, the will (LOST, QoS 1, set at each connection attempt)
 * and the goodbye (STOPPED, before a clean DISCONNECT). Its timer is unref'ed.
 */
export class Heartbeat {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly topic: string,
    private readonly producer: string,
    private readonly counters: () => HeartbeatCounters,
  ) {}

  /** Starts beating on whatever `client()` returns at each tick (nothing when disconnected). */
  start(intervalMs: number, client: () => MqttClient | undefined): void {
    if (intervalMs <= 0) return;
    this.timer = setInterval(() => {
      client()?.publish(this.topic, this.payload(ProducerState.RUNNING), { qos: 0 });
    }, intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** The will of the next connection attempt. */
  will(): { topic: string; payload: Buffer } {
    return { topic: this.topic, payload: this.payload(ProducerState.LOST) };
  }

  /** Publishes the goodbye; resolves once written. */
  goodbye(client: MqttClient): Promise<void> {
    return new Promise<void>((resolve) => {
      client.publish(this.topic, this.payload(ProducerState.STOPPED), { qos: 0 }, () => resolve());
    });
  }

  private payload(state: ProducerState): Buffer {
    return heartbeatPayload(this.producer, state, this.counters());
  }
}
