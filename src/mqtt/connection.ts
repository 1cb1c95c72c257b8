import type { IClientOptions, IConnackPacket, MqttClient } from "mqtt";
import { BillingError } from "../billing-error.js";
import { backoff } from "../common/backoff.js";
import { atMost, withDeadline } from "../common/deadline.js";
import type { LogLevel } from "../common/logger.js";
import { brokerName } from "./broker-settings.js";
import { connectOnce, discard } from "./connect-once.js";
import {
  type BrokerAddress,
  brokerList,
  brokerSettings,
  type ResolvedConnectionOptions,
} from "./connection-options.js";
import { isUnsupportedProtocol } from "./to-billing-error.js";

/**
 * The connection's state, one assignment per transition (as connect-node's HTTP/2 session
 * manager keeps its session): no field can disagree with another.
 */
export type ConnectionState =
  | { readonly t: "connecting"; readonly broker: BrokerAddress; client?: MqttClient }
  | {
      readonly t: "connected";
      readonly broker: BrokerAddress;
      readonly client: MqttClient;
      readonly connack: IConnackPacket;
      readonly version: 4 | 5;
    }
  | {
      readonly t: "backing-off";
      readonly broker: BrokerAddress;
      readonly timer: NodeJS.Timeout;
      readonly error: BillingError;
    }
  | { readonly t: "closed" };

/** What the connection tells its owner. */
export interface ConnectionEvents {
  /** The MQTT will of the next attempt. Default: none. */
  will?(): { topic: string; payload: Buffer };
  /** mqtt.js options of an attempt at `version` (the consumer's persistent session). Default: none. */
  attemptOptions?(version: 4 | 5): Partial<IClientOptions>;
  /** Called with each attempt's client before it sends CONNECT (to hook its packets). */
  prepare?(client: MqttClient): void;
  /** Checks the broker's CONNACK: an error fails the attempt (it is retried after a backoff). */
  check?(connack: IConnackPacket): BillingError | undefined;
  /** A connection is up. */
  up(client: MqttClient, connack: IConnackPacket, version: 4 | 5): void;
  /** The connection that was up is gone; a reconnect is scheduled. */
  down(): void;
  message(topic: string, payload: Buffer): void;
  log(level: LogLevel, message: string, fields?: object): void;
}

interface Waiter {
  resolve: () => void;
  reject: (err: BillingError) => void;
}

/**
 * The publisher's MQTT connection: one attempt at a time, each on a new mqtt.js client with its
 * own reconnect off; capped exponential backoff with jitter between failures (forever, also after
 * a failed first attempt); failover round robin across `fallbackBrokers`. Each attempt, on each
 * broker, starts with `protocolVersion` (5 by default) and falls back to 3.1.1 at once when that
 * broker refuses 5: a 3.1.1 broker never keeps another broker (or itself, upgraded) on 3.1.1.
 */
export class Connection {
  private state: ConnectionState;
  private brokerIndex = 0;
  private failedAttempts = 0;
  private everConnected = false;
  private readonly waiters = new Set<Waiter>();
  /** Connections made after the first one. */
  reconnects = 0;

  constructor(
    private readonly o: ResolvedConnectionOptions,
    private readonly events: ConnectionEvents,
  ) {
    this.state = { t: "connecting", broker: this.nextBroker() };
  }

  /** Makes the first attempt (once the owner is ready for events). */
  start(): void {
    if (this.state.t === "connecting" && this.state.client === undefined) {
      this.attempt(this.state.broker);
    }
  }

  /** The live client, when connected. */
  get client(): MqttClient | undefined {
    return this.state.t === "connected" && this.state.client.connected
      ? this.state.client
      : undefined;
  }

  /**
   * The MQTT version of the connection that is up: 5, or 4 (3.1.1) when its broker refused 5 or
   * `protocolVersion` is 4. Otherwise the version the next attempt starts with.
   */
  get version(): 4 | 5 {
    return this.state.t === "connected" ? this.state.version : this.o.protocolVersion;
  }

  /** The broker of the current (or next) connection. */
  get broker(): string {
    const s = this.state;
    const b = s.t === "closed" ? this.nextBroker() : s.broker;
    return `${b.host}:${b.port}`;
  }

  /**
   * Resolves once connected; when waiting to retry, tries at once. Rejects with the cause of the
   * next failed attempt, with `TIMEOUT` after `timeoutMs`, or `CLOSED`.
   */
  connect(timeoutMs: number): Promise<void> {
    const s = this.state;
    if (s.t === "closed") return Promise.reject(closedError());
    if (this.client !== undefined) return Promise.resolve();
    if (s.t === "backing-off") {
      clearTimeout(s.timer);
      this.state = { t: "connecting", broker: s.broker };
      this.attempt(s.broker);
    }
    let waiter: Waiter | undefined;
    const settled = new Promise<void>((resolve, reject) => {
      waiter = { resolve, reject };
      this.waiters.add(waiter);
    });
    const w = waiter as Waiter;
    return withDeadline(settled, timeoutMs, "not connected", () => this.waiters.delete(w));
  }

  /**
   * Closes for good: `goodbye` runs on a live connection first (bounded by `goodbyeMs`, as the
   * broker may be gone without our having noticed), then the client disconnects cleanly (so the
   * broker drops the will) and is discarded.
   */
  async close(goodbyeMs: number, goodbye: (client: MqttClient) => Promise<void>): Promise<void> {
    const s = this.state;
    this.state = { t: "closed" };
    this.settleWaiters(closedError());
    if (s.t === "backing-off") clearTimeout(s.timer);
    if (s.t === "connecting" && s.client !== undefined) discard(s.client);
    if (s.t !== "connected") return;
    const client = s.client;
    if (client.connected) {
      await atMost(
        goodbye(client).then(() => client.endAsync(false)),
        goodbyeMs,
      );
    }
    discard(client);
  }

  private nextBroker(): BrokerAddress {
    const all = brokerList(this.o);
    return all[this.brokerIndex % all.length] as BrokerAddress;
  }

  private attempt(broker: BrokerAddress, version = this.o.protocolVersion): void {
    connectOnce(brokerSettings(this.o, broker), version, {
      will: this.events.will?.(),
      extra: this.events.attemptOptions?.bind(this.events),
      onStart: (client) => {
        this.events.prepare?.(client);
        if (this.state.t === "connecting") this.state.client = client;
      },
    }).then(
      ({ client, connack }) => {
        if (this.state.t !== "connecting") {
          discard(client); // closed meanwhile
          return;
        }
        const refused = this.events.check?.(connack);
        if (refused === undefined) this.onUp(broker, client, connack, version);
        else {
          discard(client);
          this.attemptFailed(refused);
        }
      },
      (err: BillingError) => {
        if (this.state.t !== "connecting") return;
        if (version === 5 && isUnsupportedProtocol(err.cause)) {
          const name = brokerName(brokerSettings(this.o, broker));
          this.events.log("info", `${name} refused MQTT 5: trying MQTT 3.1.1 with this broker`);
          this.attempt(broker, 4);
          return;
        }
        this.attemptFailed(err);
      },
    );
  }

  private attemptFailed(err: BillingError): void {
    this.events.log("warn", `connection attempt failed: ${err.message}`, { code: err.code });
    this.brokerIndex++;
    this.settleWaiters(err);
    this.backOff(err);
  }

  private backOff(error: BillingError): void {
    const delay = backoff(this.failedAttempts++, this.o.reconnectBaseMs, this.o.reconnectMaxMs);
    const broker = this.nextBroker();
    const timer = setTimeout(() => {
      if (this.state.t !== "backing-off" || this.state.timer !== timer) return;
      this.state = { t: "connecting", broker };
      this.attempt(broker);
    }, delay);
    timer.unref();
    this.state = { t: "backing-off", broker, timer, error };
  }

  private onUp(
    broker: BrokerAddress,
    client: MqttClient,
    connack: IConnackPacket,
    version: 4 | 5,
  ): void {
    this.state = { t: "connected", broker, client, connack, version };
    this.failedAttempts = 0;
    if (this.everConnected) this.reconnects++;
    const again = this.everConnected;
    this.everConnected = true;
    client.on("error", (err) => {
      // mqtt.js reports fatal trouble on a live connection here (a packet it cannot parse, a
      // protocol error) and may leave the socket open but useless: drop it and reconnect.
      this.events.log("warn", `connection error: ${err.message}`);
      this.onLost(client);
    });
    client.on("close", () => this.onLost(client));
    client.on("message", (topic, payload) => this.events.message(topic, payload));
    this.events.log(
      "info",
      `${again ? "reconnected" : "connected"} to ${brokerName(brokerSettings(this.o, broker))} (MQTT ${version === 5 ? "5" : "3.1.1"})`,
    );
    this.events.up(client, connack, version);
    this.settleWaiters();
  }

  private onLost(client: MqttClient): void {
    const s = this.state;
    if (s.t !== "connected" || s.client !== client) return;
    // The owner lets go of the client first (records in flight go back), then it is discarded.
    const error = new BillingError("UNREACHABLE", `connection to ${this.broker} lost`);
    this.backOff(error);
    this.events.down();
    discard(client);
  }

  private settleWaiters(err?: BillingError): void {
    for (const w of this.waiters) {
      if (err === undefined) w.resolve();
      else w.reject(err);
    }
    this.waiters.clear();
  }
}

/** The error of any call on a closed client. */
export function closedError(): BillingError {
  return new BillingError("CLOSED", "the BillingClient is closed");
}
