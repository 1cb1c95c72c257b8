import { createHash } from "node:crypto";
import { toBinary } from "@bufbuild/protobuf";
import { type UsageRecord, UsageRecordSchema } from "../../gen/billing/v1/usage_pb.js";
import { REJECTED_KEEP_BYTES } from "../consumer/record-validation.js";
import type { RejectedRecord } from "../consumer/usage-store.js";

/** The columns that make a record's content: two records with one id must agree on them. */
const CONTENT = [
  "api_key_sha256",
  "app_id",
  "module",
  "model",
  "usage",
  "occurred_at",
  "metadata",
  "producer",
];

/** What one run of `writeStatement` reports (one row). */
export interface WriteRow {
  /** Records inserted by this run (and added to the rollups). */
  inserted: number;
  /** Records whose id was stored before with other content: the id and the columns that differ. */
  conflicts: Array<{ id: string; columns: string[] }>;
  /**
   * Ids neither inserted nor found stored: another transaction stored them while this one ran
   * (its row is not in this statement's snapshot), or they came twice in this run. Run again.
   */
  unresolved: string[];
  /** Rejections newly stored (a payload stored before is not counted). */
  rejected_stored: number;
}

/**
 * The one statement that writes a batch (one transaction): the records go into usage_records in
 * id order, `ON CONFLICT (id) DO NOTHING`; only those actually inserted are added to the
 * per-minute rollups (in key order, so concurrent writers cannot deadlock); rejections go into
 * rejected_records once per payload. A record not inserted is compared with the stored row of
 * its id (one index probe, only for those): the same content is a duplicate, other content a
 * conflict (reported, never billed). Returns one `WriteRow`.
 */
export function writeStatement(s: string): string {
  const differs = CONTENT.map((c) => `CASE WHEN m.${c} IS DISTINCT FROM u.${c} THEN '${c}' END`);
  return `WITH input AS (
  SELECT * FROM jsonb_to_recordset($1::jsonb) AS t(
    id uuid, api_key_sha256 text, app_id text, module text, model text,
    usage numeric(20,0), occurred_at timestamptz, metadata jsonb, producer text)
), ins AS (
  INSERT INTO ${s}.usage_records
    (id, api_key_sha256, app_id, module, model, usage, occurred_at, metadata, producer, received_at)
  SELECT id, api_key_sha256, app_id, module, model, usage, occurred_at, metadata, producer, now()
  FROM input ORDER BY id
  ON CONFLICT (id) DO NOTHING
  RETURNING id, api_key_sha256, app_id, module, model, usage, occurred_at
), rollup AS (
  INSERT INTO ${s}.usage_minutely AS m (minute, api_key_sha256, app_id, module, model, usage, records)
  SELECT date_trunc('minute', occurred_at, 'UTC'), api_key_sha256, max(app_id), module, model,
    sum(usage), count(*)
  FROM ins GROUP BY 1, 2, 4, 5 ORDER BY 1, 2, 4, 5
  ON CONFLICT (minute, api_key_sha256, module, model) DO UPDATE
  SET usage = m.usage + excluded.usage, records = m.records + excluded.records,
    app_id = greatest(m.app_id, excluded.app_id)
), missed AS MATERIALIZED (
  SELECT * FROM input i WHERE NOT EXISTS (SELECT 1 FROM ins WHERE ins.id = i.id)
), checked AS (
  SELECT m.id, u.id IS NULL AS unseen,
    array_remove(ARRAY[${differs.join(", ")}], NULL) AS columns
  FROM missed m LEFT JOIN ${s}.usage_records u ON u.id = m.id
), rejected AS (
  INSERT INTO ${s}.rejected_records (payload_sha256, payload, reason, record_id, producer, received_at)
  SELECT payload_sha256, decode(payload, 'base64'), reason, record_id, producer, now()
  FROM jsonb_to_recordset($2::jsonb)
    AS j(payload_sha256 text, payload text, reason text, record_id text, producer text)
  ON CONFLICT (payload_sha256) DO NOTHING
  RETURNING 1
)
SELECT (SELECT count(*)::int FROM ins) AS inserted,
  (SELECT coalesce(jsonb_agg(jsonb_build_object('id', id, 'columns', columns)), '[]'::jsonb)
    FROM checked WHERE NOT unseen AND cardinality(columns) > 0) AS conflicts,
  (SELECT coalesce(array_agg(id::text), '{}') FROM checked WHERE unseen) AS unresolved,
  (SELECT count(*)::int FROM rejected) AS rejected_stored`;
}

// The date and time of the last second formatted: the records of a batch share a few seconds.
let lastSecond = { seconds: Number.NaN, text: "" };

/** `occurredAt` as an ISO 8601 UTC time with microseconds (what timestamptz keeps). */
function isoTime(record: UsageRecord): string {
  const t = record.occurredAt;
  if (t === undefined) throw new Error("occurredAt is missing"); // validation refused it before
  const seconds = Number(t.seconds);
  if (seconds !== lastSecond.seconds) {
    lastSecond = { seconds, text: new Date(seconds * 1000).toISOString().slice(0, 19) };
  }
  return `${lastSecond.text}.${String(Math.floor(t.nanos / 1000)).padStart(6, "0")}Z`;
}

/** The `$1` of `writeStatement`: the records as a JSON array. */
export function recordsJson(records: readonly UsageRecord[]): string {
  return JSON.stringify(
    records.map((r) => ({
      id: r.id,
      api_key_sha256: r.apiKeySha256,
      app_id: r.appId,
      module: r.module,
      model: r.model,
      usage: r.usage.toString(),
      occurred_at: isoTime(r),
      metadata: r.metadata ?? null,
      producer: r.producer,
    })),
  );
}

// Text columns cannot hold NUL; these are descriptions of a dead letter, whose bytes are kept.
const noNul = (s: string | undefined) =>
  s === undefined ? null : s.slice(0, 1000).replaceAll("\u0000", "\ufffd");

/** The `$2` of `writeStatement`: the rejections as a JSON array (payloads in base64). */
export function rejectedJson(rejected: readonly RejectedRecord[]): string {
  return JSON.stringify(
    rejected.map((r) => ({
      // Keyed by the whole payload's hash; only its beginning is stored (a huge payload would
      // pass PostgreSQL's limits and block every write after it).
      payload_sha256: createHash("sha256").update(r.payload).digest("hex"),
      payload: Buffer.from(r.payload.subarray(0, REJECTED_KEEP_BYTES)).toString("base64"),
      reason: noNul(
        r.payload.length > REJECTED_KEEP_BYTES
          ? `${r.reason} (a payload of ${r.payload.length} bytes: its first ${REJECTED_KEEP_BYTES} are kept)`
          : r.reason,
      ),
      record_id: noNul(r.recordId),
      producer: noNul(r.producer),
    })),
  );
}

/** A record PostgreSQL refused (a data error), as a rejection. */
export function refusedRecord(record: UsageRecord, err: unknown): RejectedRecord {
  return {
    reason: `PostgreSQL refused it: ${err instanceof Error ? err.message : String(err)}`,
    payload: toBinary(UsageRecordSchema, record),
    recordId: record.id,
    producer: record.producer,
  };
}
