import type { LogLevel } from "../../common/logger.js";

/**
 * The warning a publisher running on MQTT 3.1.1 deserves: a 3.1.1 broker has no PUBACK reason
 * codes, so it cannot say "no subscriber" (0x10): records published while no ingest session
 * exists are acknowledged, dropped, and counted published. Logged when the client starts running
 * on 3.1.1: at its first connection on 3.1.1, and again after a connection with MQTT 5 or on
 * another broker (a failover), not at every reconnect to the same 3.1.1 broker.
 */
export class Mqtt311Warning {
  /** The broker last warned about, while the connections stay on 3.1.1 with it. */
  private warned: string | undefined;

  constructor(
    private readonly topic: string,
    /** `protocolVersion: 4` was asked for (else the broker refused MQTT 5). */
    private readonly chosen: boolean,
    private readonly log: (level: LogLevel, message: string) => void,
  ) {}

  /** A connection to `broker` (host:port) is up with MQTT `version`. */
  connected(broker: string, version: 4 | 5): void {
    if (version === 5) this.warned = undefined;
    if (version === 5 || this.warned === broker) return;
    this.warned = broker;
    const why = this.chosen ? "protocolVersion: 4" : "it refused MQTT 5";
    this.log(
      "warn",
      `running on MQTT 3.1.1 with ${broker} (${why}): a 3.1.1 broker cannot report "no subscriber" (PUBACK reason 0x10), so records sent on ${this.topic} while no ingest session exists are dropped by the broker, and counted published. Start the ingest with a persistent session (billing-sdk ingest) before the producers, or use an MQTT 5 broker`,
    );
  }
}
