import { BillingError } from "../billing-error.js";
import type { SqlClient } from "./sql-client.js";

/**
 * The schema's versions, oldest first. Each is applied once, in one transaction with its row in
 * `<schema>.schema_migrations`; a released version is never edited (add the next one instead).
 * Table names are fixed: a backend's SQL and dashboards rely on them.
 */
const MIGRATIONS: ReadonlyArray<{ version: number; name: string; sql: (s: string) => string[] }> = [
  {
    version: 1,
    name: "usage_records, usage_minutely, rejected_records",
    sql: (s) => [
      `CREATE TABLE ${s}.usage_records (
          id uuid PRIMARY KEY,
          api_key_sha256 text NOT NULL,
          app_id text NOT NULL,
          module text NOT NULL,
          model text NOT NULL,
          usage numeric(20,0) NOT NULL,
          occurred_at timestamptz NOT NULL,
          metadata jsonb,
          producer text NOT NULL,
          received_at timestamptz NOT NULL DEFAULT now()
        )`,
      `COMMENT ON TABLE ${s}.usage_records IS 'billing-sdk: every UsageRecord once (by id)'`,
      `CREATE TABLE ${s}.usage_minutely (
          minute timestamptz NOT NULL,
          api_key_sha256 text NOT NULL,
          app_id text NOT NULL,
          module text NOT NULL,
          model text NOT NULL,
          usage numeric(20,0) NOT NULL,
          records bigint NOT NULL,
          PRIMARY KEY (minute, api_key_sha256, module, model)
        )`,
      `COMMENT ON TABLE ${s}.usage_minutely IS 'billing-sdk: usage_records summed per UTC minute of occurred_at, key, module and model'`,
      `CREATE TABLE ${s}.rejected_records (
          payload_sha256 text PRIMARY KEY,
          payload bytea NOT NULL,
          reason text NOT NULL,
          record_id text,
          producer text,
          received_at timestamptz NOT NULL DEFAULT now()
        )`,
      `COMMENT ON TABLE ${s}.rejected_records IS 'billing-sdk: records that cannot be billed, as they arrived, with why (each payload once)'`,
    ],
  },
];

/** The newest schema version this code knows. */
const SCHEMA_VERSION = MIGRATIONS.length;

/**
 * Checks, without changing anything, that `schema` holds this code's tables at its version (for
 * readers, which need no CREATE right). Throws `STORE` saying what is wrong.
 */
export async function checkMigrated(db: SqlClient, schema: string): Promise<void> {
  const rows = await db.query<{ version: number | null }>(
    "SELECT CASE WHEN to_regclass($1) IS NULL THEN NULL ELSE 0 END AS version",
    [`"${schema}".schema_migrations`],
  );
  if (rows[0]?.version === null || rows[0] === undefined) {
    throw new BillingError(
      "STORE",
      `schema ${schema} holds no billing tables: is the schema name right? (billing-sdk ingest creates them)`,
    );
  }
  const versions = await db.query<{ version: number }>(
    `SELECT max(version) AS version FROM "${schema}".schema_migrations`,
  );
  const version = Number(versions[0]?.version ?? 0);
  if (version !== SCHEMA_VERSION) {
    throw new BillingError(
      "STORE",
      `schema ${schema} is at version ${version}, this billing-sdk reads version ${SCHEMA_VERSION}`,
    );
  }
}

/**
 * Creates `schema` and applies the migrations it lacks, in one transaction under an advisory
 * lock (two ingest processes starting together do it once). Refuses a schema that a newer
 * billing-sdk migrated further.
 */
export async function migrate(db: SqlClient, schema: string): Promise<void> {
  const s = `"${schema}"`;
  await db.transaction(async (q) => {
    await q("SELECT pg_advisory_xact_lock(hashtext($1))", [`billing-sdk migrations ${schema}`]);
    await q(`CREATE SCHEMA IF NOT EXISTS ${s}`);
    await q(
      `CREATE TABLE IF NOT EXISTS ${s}.schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
    );
    const rows = await q<{ version: number }>(`SELECT version FROM ${s}.schema_migrations`);
    const applied = new Set(rows.map((r) => Number(r.version)));
    const newest = Math.max(0, ...applied);
    if (newest > SCHEMA_VERSION) {
      throw new BillingError(
        "STORE",
        `schema ${schema} is at version ${newest}, newer than this billing-sdk knows (${SCHEMA_VERSION}): upgrade billing-sdk`,
      );
    }
    for (const m of MIGRATIONS) {
      if (applied.has(m.version)) continue;
      for (const statement of m.sql(s)) await q(statement);
      await q(`INSERT INTO ${s}.schema_migrations (version, name) VALUES ($1, $2)`, [
        m.version,
        m.name,
      ]);
    }
  });
}
