// The public API of billing-sdk, exported by name.

// Wire types (generated from proto/billing/v1/usage.proto).
export {
  file_billing_v1_usage,
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
export type {
  Heartbeat,
  KeyListRequest,
  KeyStatus,
  KeyUpdate,
  UsageRecord,
} from "../gen/billing/v1/usage_pb.js";
