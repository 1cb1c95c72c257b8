import { toBinary } from "@bufbuild/protobuf";
import { type UsageRecord, UsageRecordSchema } from "../../gen/billing/v1/usage_pb.js";
import type { RejectedRecord } from "./usage-store.js";

/**
 * A record whose id was handled before with other content, as a rejection: never billed, kept
 * for a person to look at. `what` says what is known of the first one, e.g. "stored before with
 * a different usage". The reason names the id, never the key.
 */
export function idConflict(record: UsageRecord, what: string): RejectedRecord {
  return {
    reason: `id ${record.id} was ${what}: not billed again`,
    payload: toBinary(UsageRecordSchema, record),
    recordId: record.id,
    producer: record.producer,
  };
}
