// The public API of billing-sdk, exported by name.

export type {
  Heartbeat,
  KeyListRequest,
  KeyStatus,
  KeyUpdate,
  UsageRecord,
} from "../gen/billing/v1/usage_pb.js";
export {
  HeartbeatSchema,
  KeyListRequestSchema,
  KeyState,
  KeyStateSchema,
  KeyStatusSchema,
  KeyUpdateSchema,
  ProducerState,
  ProducerStateSchema,
  UsageRecordSchema,
} from "../gen/billing/v1/usage_pb.js";
export { hashApiKey } from "./api-key-hash.js";
export type { BillingCaller } from "./billing-caller.js";
export { billingCaller } from "./billing-caller.js";
export type { BillingStats } from "./billing-client.js";
export { BillingClient, getBillingClient } from "./billing-client.js";
export type { BillingClientOptions } from "./billing-client-options.js";
export type { BillingErrorCode } from "./billing-error.js";
export { BillingError } from "./billing-error.js";
export type { KeyChange, KeyInfo, KeyListener } from "./key-list.js";
export { KeyList } from "./key-list.js";
export type { VerifiedKey } from "./key-verifier-cache.js";
export type { BillingLogger, LogLevel } from "./logger.js";
export type { RecordSpool, SpooledRecord } from "./record-spool.js";
export { reportUsage } from "./report-usage.js";
export type { CallerUsage } from "./report-usage-for.js";
export { reportUsageFor } from "./report-usage-for.js";
export type { ApiKeyDecision, RequireApiKeyOptions } from "./require-api-key.js";
export { requireApiKey } from "./require-api-key.js";
export type { SqliteSpoolOptions } from "./sqlite-spool.js";
export { SqliteSpool } from "./sqlite-spool.js";
export type { BillingTopics } from "./topics.js";
export { billingTopics } from "./topics.js";
export type {
  UsageConsumer,
  UsageConsumerOptions,
  UsageConsumerStats,
} from "./usage-consumer.js";
export { createUsageConsumer } from "./usage-consumer.js";
export type { UsageInit } from "./usage-input.js";
