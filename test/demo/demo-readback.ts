import type { PostgresUsageStore } from "../../src/postgres/index.js";

/** A row of billing.usage_records, read back from the database. */
export interface StoredRecord {
  id: string;
  appId: string;
  module: string;
  model: string;
  usage: string;
  occurredAt: string;
  metadata: unknown;
}

/** A row of billing.usage_minutely. */
export interface RollupRow {
  minute: string;
  appId: string;
  module: string;
  model: string;
  usage: string;
  records: number;
}

/** The records and the per-minute rollup the store holds, as the demo prints them. */
export async function readBack(
  store: PostgresUsageStore,
): Promise<{ records: StoredRecord[]; rollup: RollupRow[] }> {
  const records = (
    await store.query<Record<string, string>>(
      `SELECT id::text, app_id, module, model, usage::text, to_json(occurred_at) #>> '{}' AS occurred_at, metadata
       FROM billing.usage_records ORDER BY usage_records.occurred_at, id`,
    )
  ).map(
    (r): StoredRecord => ({
      id: r.id as string,
      appId: r.app_id as string,
      module: r.module as string,
      model: r.model as string,
      usage: r.usage as string,
      occurredAt: r.occurred_at as string,
      metadata: r.metadata,
    }),
  );
  const rollup = (
    await store.query<Record<string, string>>(
      `SELECT to_char(minute AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') AS minute, app_id, module,
         model, usage::text, records::int FROM billing.usage_minutely ORDER BY minute, module, model`,
    )
  ).map(
    (r): RollupRow => ({
      minute: r.minute as string,
      appId: r.app_id as string,
      module: r.module as string,
      model: r.model as string,
      usage: r.usage as string,
      records: Number(r.records),
    }),
  );
  return { records, rollup };
}
