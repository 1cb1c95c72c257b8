import { fromBinary } from "@bufbuild/protobuf";
import { type UsageRecord, UsageRecordSchema } from "../../gen/billing/v1/usage_pb.js";
import { BillingError } from "../billing-error.js";
import { isSha256Hex } from "../common/sha256-hex.js";
import { MetadataBudget } from "../protocol/metadata-budget.js";
import { usageBatchRecordBytes } from "../protocol/usage-batch.js";
import { checkName, checkTimestamp, UUID } from "../protocol/usage-input.js";
import { recordDigest } from "./dedupe-window.js";
import type { RejectedRecord } from "./usage-store.js";

const NIL_UUID = "00000000-0000-0000-0000-000000000000";

/**
 * Why `record` cannot be billed, or undefined when it can: the rules `reportUsage` applies to what
 * it sends (a lowercase UUID id, a 64-hex fingerprint, names without control or invisible
 * characters, a time within 0001–9999, JSON-like metadata of at most 32 levels and 10,000
 * values), so a record that passed a billing-sdk producer passes here.
 */
export function recordProblem(record: UsageRecord): string | undefined {
  if (!UUID.test(record.id) || record.id === NIL_UUID) {
    return "id: must be a lowercase hyphenated UUID, not empty or nil";
  }
  if (!isSha256Hex(record.apiKeySha256)) {
    return "apiKeySha256: must be 64 lowercase hex characters";
  }
  if (record.occurredAt === undefined) return "occurredAt: missing";
  try {
    checkName("module", record.module);
    checkName("model", record.model);
    checkName("appId", record.appId, true);
    checkName("producer", record.producer, true);
    checkTimestamp("occurredAt", record.occurredAt);
    if (record.metadata !== undefined) {
      new MetadataBudget(Number.POSITIVE_INFINITY, 0).check(record.metadata);
    }
  } catch (err) {
    return err instanceof BillingError ? err.rawMessage : String(err);
  }
  return undefined;
}

/** How much of a rejected payload is kept: the beginning of a huge one says enough. */
export const REJECTED_KEEP_BYTES = 16_384;

/** The records of one message on `<prefix>/report`, split into billable and rejected. */
export interface CheckedMessage {
  records: UsageRecord[];
  /** The digest of each record's bytes (`recordDigest`), in the order of `records`. */
  digests: string[];
  rejected: RejectedRecord[];
}

/**
 * Decodes one message (a `UsageBatch`) record by record and checks each: a record that does not
 * decode or fails `recordProblem` is rejected with its own bytes, the others go on. A payload
 * that is not a `UsageBatch`, or holds no record (e.g. 0 bytes), is rejected whole.
 */
export function checkMessage(
  payload: Uint8Array,
  maxBytes = Number.POSITIVE_INFINITY,
): CheckedMessage {
  const out: CheckedMessage = { records: [], digests: [], rejected: [] };
  if (payload.length > maxBytes) {
    // Not decoded; only its beginning is kept for a person to look at.
    out.rejected.push({
      reason: `the message is ${payload.length} bytes, more than maxMessageBytes (${maxBytes}); its first ${REJECTED_KEEP_BYTES} bytes are kept`,
      // A copy: a view would keep the whole payload alive.
      payload: Uint8Array.prototype.slice.call(payload, 0, REJECTED_KEEP_BYTES),
    });
    return out;
  }
  let parts: Uint8Array[];
  try {
    parts = usageBatchRecordBytes(payload);
  } catch {
    out.rejected.push({ reason: "the message is not a billing.v1.UsageBatch", payload });
    return out;
  }
  if (parts.length === 0) {
    out.rejected.push({ reason: "the message holds no record", payload });
    return out;
  }
  for (const bytes of parts) {
    let record: UsageRecord;
    try {
      record = fromBinary(UsageRecordSchema, bytes);
    } catch {
      out.rejected.push({ reason: "not a billing.v1.UsageRecord", payload: bytes });
      continue;
    }
    const problem = recordProblem(record);
    if (problem === undefined) {
      out.records.push(record);
      out.digests.push(recordDigest(bytes));
    } else {
      out.rejected.push({
        reason: problem,
        payload: bytes,
        recordId: record.id,
        producer: record.producer,
      });
    }
  }
  return out;
}
