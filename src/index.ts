/**
 * The public API of billing-sdk's core, exported by name: the publisher (`BillingClient`,
 * `reportUsage`) and the interceptor (`requireApiKey`). Optional parts are subpath exports:
 * `billing-sdk/spool` (SQLite outbox), `billing-sdk/consumer` (the backend's consumer),
 * `billing-sdk/postgres` (its PostgreSQL store) and `billing-sdk/otel` (metrics).
 *
 * @module billing-sdk
 */

export type {
  Heartbeat,
  KeyListRequest,
  KeyStatus,
  KeyUpdate,
  Quota,
  RateLimit,
  SignedKeyUpdate,
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
  QuotaSchema,
  RateLimitSchema,
  SignedKeyUpdateSchema,
  UsageRecordSchema,
} from "../gen/billing/v1/usage_pb.js";
export type { BillingErrorCode } from "./billing-error.js";
export { BillingError } from "./billing-error.js";
export { hashApiKey } from "./common/api-key-hash.js";
export type { BillingLogger, LogLevel } from "./common/logger.js";
export type { BillingCaller } from "./interceptor/billing-caller.js";
export { billingCaller } from "./interceptor/billing-caller.js";
export type { MeteredStreamOptions } from "./interceptor/metered-stream.js";
export { meteredStream } from "./interceptor/metered-stream.js";
export type { CallerUsage } from "./interceptor/report-usage-for.js";
export { reportUsageFor } from "./interceptor/report-usage-for.js";
export type { ApiKeyDecision, RequireApiKeyOptions } from "./interceptor/require-api-key.js";
export { requireApiKey } from "./interceptor/require-api-key.js";
export type { VerifiedKey } from "./interceptor/verify-key-source.js";
export type { DecisionCounts, DecisionOutcome } from "./keys/decision-counts.js";
export type { KeyChange, KeyInfo, KeyListener } from "./keys/key-list.js";
export { KeyList } from "./keys/key-list.js";
export type { AllowedMethods, KeyPlan, KeyRules, LimitRule } from "./keys/key-rules.js";
export type { KeyUpdateRefusal, KeyUpdateRefusals } from "./keys/key-update-gate.js";
export { signKeyUpdate } from "./keys/signed-key-update.js";
export type { MqttConnectionOptions } from "./mqtt/connection-options.js";
export type { BillingTopics } from "./protocol/topics.js";
export { billingTopics } from "./protocol/topics.js";
export type { UsageInit } from "./protocol/usage-input.js";
export { BillingClient, getBillingClient } from "./publisher/client/billing-client.js";
export type { BillingStats } from "./publisher/client/billing-stats.js";
export type { CloseOnSignalsOptions } from "./publisher/client/close-on-signals.js";
export { closeOnSignals } from "./publisher/client/close-on-signals.js";
export type { BillingClientOptions } from "./publisher/client/options.js";
export { reportUsage } from "./publisher/client/report-usage.js";
export type { KeySyncOptions } from "./publisher/key-sync/key-sync-options.js";
export type { BatchOptions, QueueOptions } from "./publisher/pipeline/pipeline-options.js";
export type { RecordSpool, SpooledRecord } from "./publisher/record-spool.js";
