/**
 * billing-sdk/consumer: the backend's side, an optional part.
 *
 * @module billing-sdk/consumer
 */

export type { BatchObserver, ConsumerBatch } from "./batch-observers.js";
export type { UsageConsumerOptions } from "./consumer-options.js";
export { createUsageConsumer } from "./usage-consumer.js";
export type { UsageConsumer, UsageConsumerStats } from "./usage-consumer-api.js";
export type {
  RejectedRecord,
  UsageStore,
  UsageWrite,
  UsageWriteResult,
} from "./usage-store.js";
