import { fromBinary } from "@bufbuild/protobuf";
import type { MqttClient } from "mqtt";
import { KeyUpdateSchema } from "../../gen/billing/v1/usage_pb.js";
import type { LogLevel } from "../common/logger.js";
import { KeyList } from "../keys/key-list.js";
import { keyListRequestPayload } from "../protocol/messages.js";
import type { BillingTopics } from "../protocol/topics.js";

/**
 * Keeps the API-key list the billing backend pushes: after every (re)connect it subscribes to
 * `<prefix>/keys/update` and then asks for a snapshot on `<prefix>/keys/request`; it applies
 * each update that arrives. Subscribing once per connection (a new client each time) means key
 * requests never multiply across reconnects.
 */
export class KeySync {
  /** The key list. */
  readonly keys: KeyList;
  /** Updates applied. */
  applied = 0;
  /** Update payloads that could not be decoded (ignored; the list stayed as it was). */
  undecodable = 0;

  constructor(
    private readonly topics: BillingTopics,
    private readonly producer: string,
    private readonly log: (level: LogLevel, message: string, fields?: object) => void,
  ) {
    this.keys = new KeyList((err) =>
      log("error", "a key-list listener threw; the other listeners still ran", { err }),
    );
  }

  /** A connection is up: subscribe, then ask for a snapshot. */
  start(client: MqttClient): void {
    client.subscribe(this.topics.keysUpdate, { qos: 1 }, (err) => {
      if (err) {
        this.log("error", `subscribing to ${this.topics.keysUpdate} failed: ${err.message}`);
        return;
      }
      client.publish(
        this.topics.keysRequest,
        keyListRequestPayload(this.producer),
        { qos: 1 },
        (e) => {
          if (e) this.log("warn", `key-list request failed: ${e.message}`);
        },
      );
    });
  }

  /** A message arrived; those on the key-update topic are applied. */
  onMessage(topic: string, payload: Buffer): void {
    if (topic !== this.topics.keysUpdate) return;
    let update: ReturnType<typeof fromBinary<typeof KeyUpdateSchema>>;
    try {
      update = fromBinary(KeyUpdateSchema, payload);
    } catch (err) {
      this.undecodable++;
      this.log("warn", `ignored a key update that does not decode (${payload.length} bytes)`, {
        error: (err as Error).message,
      });
      return;
    }
    const changes = this.keys.apply(update);
    this.applied++;
    this.log("debug", `key update applied (${update.snapshot ? "snapshot" : "delta"})`, {
      changed: changes.length,
      known: this.keys.size,
    });
  }
}
