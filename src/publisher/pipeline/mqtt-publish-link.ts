import type { IClientPublishOptions, MqttClient } from "mqtt";
import { usageBatchBytes } from "../../protocol/usage-batch.js";
import type { PublishLink } from "./send-pipeline.js";

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
  return {
    window,
    maxBatchBytes,
    // mqtt.js refuses publishes (synchronously) once it is disconnecting.
    isUp: () => !gone && client.connected && !client.disconnecting,
    // Every message on <prefix>/report is a UsageBatch: the records' bytes framed, not re-encoded.
    send: (records, done) =>
      client.publish(topic, usageBatchBytes(records.map((r) => r.bytes)), options, (err) => {
        if (err && typeof (err as { code?: unknown }).code !== "number") {
          if (CONNECTION_GONE.test(err.message)) gone = true;
        }
        done(err);
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
