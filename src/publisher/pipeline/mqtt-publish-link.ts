import type { IClientPublishOptions, MqttClient, Packet } from "mqtt";
import { usageBatchBytes } from "../../protocol/usage-batch.js";
import type { PublishLink } from "./publish-link.js";
import { NO_MATCHING_SUBSCRIBERS } from "./send-outcome.js";

const PUBLISH_V4: IClientPublishOptions = { qos: 1 };
// MQTT 5 lets consumers see what a payload is without knowing the topic.
const PUBLISH_V5: IClientPublishOptions = {
  qos: 1,
  properties: {
    contentType: "application/x-protobuf",
    userProperties: { "message-type": "billing.v1.UsageBatch" },
  },
};
// mqtt.js fails publishes with these when the connection goes (a keepalive timeout, a forced
// end), sometimes while `connected` still reads true: they say nothing about the record.
const CONNECTION_GONE = /^(Connection closed|client disconnecting)/;

/**
 * The send pipeline's link over one live mqtt.js connection: QoS 1 publishes on `topic`, at
 * most `window` awaiting their PUBACK (the caller caps it by the broker's receive maximum), each
 * a `UsageBatch` of at most `maxBatchBytes` (the caller keeps it within the broker's maximum
 * packet size).
 *
 * On MQTT 5 a PUBACK with reason 0x10 (no matching subscribers: the broker dropped the message)
 * fails the publish with `code` 0x10: mqtt.js calls back without an error and without the PUBACK,
 * so the reason codes are read from the PUBACKs as they arrive, by packet id (the id is not
 * reused before its callback has run).
 */
export function mqttPublishLink(
  client: MqttClient,
  topic: string,
  version: 4 | 5,
  window: number,
  maxBatchBytes: number,
): PublishLink {
  const options = version === 5 ? PUBLISH_V5 : PUBLISH_V4;
  let gone = false;
  // Packet ids whose PUBACK said 0x10, until their callback runs. Any other PUBACK of an id
  // clears it (a stray PUBACK that mqtt.js ignores cannot mark a later publish).
  const noSubscriber = new Set<number>();
  if (version === 5) {
    client.on("packetreceive", (packet: Packet) => {
      if (packet.cmd !== "puback" || packet.messageId === undefined) return;
      if (packet.reasonCode === NO_MATCHING_SUBSCRIBERS) noSubscriber.add(packet.messageId);
      else noSubscriber.delete(packet.messageId);
    });
  }
  return {
    window,
    maxBatchBytes,
    // mqtt.js refuses publishes (synchronously) once it is disconnecting.
    isUp: () => !gone && client.connected && !client.disconnecting,
    // Every message on <prefix>/report is a UsageBatch: the records' bytes framed, not re-encoded.
    send: (records, done) =>
      client.publish(topic, usageBatchBytes(records.map((r) => r.bytes)), options, (err, sent) => {
        if (err && typeof (err as { code?: unknown }).code !== "number") {
          if (CONNECTION_GONE.test(err.message)) gone = true;
        }
        const id = sent?.messageId;
        if (!err && id !== undefined && noSubscriber.delete(id)) done(noSubscriberError());
        else done(err);
      }),
    // Publishes made in one tick (a burst of reportUsage calls, or of PUBACKs read in one chunk)
    // leave in one write: one syscall for many packets instead of several per packet.
    cork: () => {
      const stream = client.stream;
      stream.cork();
      process.nextTick(() => stream.uncork());
    },
  };
}

function noSubscriberError(): Error {
  return Object.assign(new Error("PUBACK reason 0x10: No matching subscribers"), {
    code: NO_MATCHING_SUBSCRIBERS,
  });
}
