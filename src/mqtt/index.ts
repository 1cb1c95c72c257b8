// The MQTT connection every part of billing-sdk shares (the publisher's and the consumer's): what
// the folders of its own layer (publisher/, interceptor/) may import from mqtt/.

export { Connection, closedError } from "./connection.js";
export type {
  MqttConnectionOptions,
  ResolvedConnectionOptions,
} from "./connection-options.js";
export { brokerList, resolveConnectionOptions } from "./connection-options.js";
