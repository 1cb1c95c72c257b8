import type { IConnackPacket } from "mqtt";
import { BillingError } from "../../billing-error.js";
import type { ResolvedPipelineOptions } from "../pipeline/pipeline-options.js";

/**
 * Bytes of an MQTT PUBLISH on the report topic besides the batch and the topic name: fixed
 * header (≤ 5), topic length (2), packet id (2), MQTT 5 properties (content type and the
 * `message-type` user property, ≈ 66), rounded up.
 */
const PUBLISH_OVERHEAD = 128;

/**
 * The most bytes of one batch on a connection: `maxBatchBytes`, within the maximum packet size
 * the broker announced in its CONNACK (MQTT 5), if any.
 */
function batchBytesFor(
  maxBatchBytes: number,
  topic: string,
  maxPacket: number | undefined,
): number {
  if (maxPacket === undefined) return maxBatchBytes;
  return Math.max(
    1,
    Math.min(maxBatchBytes, maxPacket - Buffer.byteLength(topic) - PUBLISH_OVERHEAD),
  );
}

/** What one connection allows, from the options and the broker's CONNACK. */
export interface ConnectionLimits {
  /** Messages awaiting their PUBACK at once (MQTT 5: at most the broker's receive maximum). */
  window: number;
  /** Bytes of one message's batch. */
  batchBytes: number;
  /** The largest record (alone in a batch: 6 bytes of framing). */
  maxRecordBytes: number;
}

/**
 * Why a broker that answered `connack` cannot be used, if it cannot: its maximum packet size
 * leaves no room for a record on `topic` (`PROTOCOL`). The attempt fails with this error.
 */
export function connackProblem(
  o: ResolvedPipelineOptions,
  topic: string,
  connack: IConnackPacket,
): BillingError | undefined {
  const maxPacket = connack.properties?.maximumPacketSize;
  if (maxPacket === undefined || connectionLimits(o, topic, connack).maxRecordBytes > 0) {
    return undefined;
  }
  return new BillingError(
    "PROTOCOL",
    `the broker's maximum packet size (${maxPacket} bytes) leaves no room for a usage record on topic "${topic}" (a PUBLISH there takes ${Buffer.byteLength(topic) + PUBLISH_OVERHEAD} bytes besides the record): raise the broker's max_packet_size`,
  );
}

/** The limits of a connection to a broker that answered `connack` (see `connackProblem`). */
export function connectionLimits(
  o: ResolvedPipelineOptions,
  topic: string,
  connack: IConnackPacket,
): ConnectionLimits {
  const batchBytes = batchBytesFor(o.maxBatchBytes, topic, connack.properties?.maximumPacketSize);
  return {
    // MQTT 5 flow control: never more unacknowledged QoS 1 publishes than the broker allows.
    window: Math.min(o.inFlightWindow, connack.properties?.receiveMaximum ?? 65535),
    batchBytes,
    maxRecordBytes: Math.min(o.maxRecordBytes, batchBytes - 6),
  };
}
