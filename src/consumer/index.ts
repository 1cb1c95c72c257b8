// billing-sdk/consumer: the backend's side, an optional part.

export type {
  UsageConsumer,
  UsageConsumerOptions,
  UsageConsumerStats,
} from "./usage-consumer.js";
export { createUsageConsumer } from "./usage-consumer.js";
