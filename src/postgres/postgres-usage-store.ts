import type { UsageRecord } from "../../gen/billing/v1/usage_pb.js";
import { BillingError } from "../billing-error.js";
import type {
  RejectedRecord,
  UsageStore,
  UsageWrite,
  UsageWriteResult,
} from "../consumer/usage-store.js";
import { checkMigrated, migrate } from "./migrations.js";
import { pgClient, pgliteClient, type Query, type SqlClient } from "./sql-client.js";
import { toStoreError } from "./store-error.js";
import { type WriteOutcome, writeRecords } from "./write-records.js";
import { refusedRecord, writeStatement } from "./write-statement.js";

/** Options of `createPostgresUsageStore()`. */
export interface PostgresUsageStoreOptions {
  /**
   * A PostgreSQL server, `postgres://user:password@host:5432/db` (TLS:
   * `?sslmode=verify-full&sslrootcert=ca.pem`), reached with node-postgres (`pg` 8, an optional
   * peer dependency). Default: none, an embedded PGlite (`@electric-sql/pglite`, also optional).
   */
  connectionString?: string | undefined;
  /**
   * The embedded PGlite's directory, when there is no `connectionString`. Default: in memory,
   * gone when the process ends (demos and tests).
   */
  dataDir?: string | undefined;
  /**
   * The schema that holds the tables (`usage_records`, `usage_minutely`, `rejected_records`,
   * `schema_migrations`), created if missing: lowercase letters, digits and `_`. Default: `"billing"`.
   */
  schema?: string | undefined;
  /** Connections to the server at most (node-postgres pool). Default: `4`. */
  maxConnections?: number | undefined;
  /**
   * How long one statement may run on the server (PostgreSQL's `statement_timeout`, lock waits
   * included): a write stuck behind a lock fails and is retried instead of holding the store, and
   * `close()` ends within it. Default: `30_000` ms.
   */
  statementTimeoutMs?: number | undefined;
  /**
   * Create the schema and apply its migrations at start. `false` (readers such as
   * `billing-sdk usage`, a read-only role): only check that the tables are there, at this
   * version. Default: `true`.
   */
  migrate?: boolean | undefined;
}

/**
 * Usage summed over the rollups for one app, module and model; for records without an app (see
 * `apiKeySha256`), for one key, module and model.
 */
export interface UsageTotal {
  /** The app of the records; empty when the process that reported them did not know it. */
  appId: string;
  /**
   * When `appId` is empty: the SHA-256 (hex) of the records' key. A process that does not check
   * keys (reporting only, no key list) cannot tell the app, so its records carry none and the
   * backend resolves it from this. Undefined when `appId` is set (its keys are summed together).
   */
  apiKeySha256: string | undefined;
  /** The records' module, e.g. `"llm"`. */
  module: string;
  /** The records' model, e.g. `"gpt-4"`. */
  model: string;
  /** The sum of the records' `usage`. */
  usage: bigint;
  /** How many records were summed. */
  records: number;
}

/** The PostgreSQL usage store: a `UsageStore` for `createUsageConsumer({ store })`, and reads. */
export interface PostgresUsageStore extends UsageStore {
  /** The schema of the tables. */
  readonly schema: string;
  /** Where the data is (never the password). */
  readonly where: string;
  /** The rollups since `since` (default: all), summed per app, module and model. */
  usage(options?: { since?: Date | undefined }): Promise<UsageTotal[]>;
  /** Any SQL statement, e.g. `SELECT … FROM billing.usage_records`; resolves with its rows. */
  query<R extends object = Record<string, unknown>>(
    sql: string,
    params?: readonly unknown[],
  ): Promise<R[]>;
  /** Closes the connections (or the embedded database). */
  close(): Promise<void>;
}

// SQLSTATE classes of errors about the data itself (22: data exception, e.g. a numeric overflow;
// 54: a program limit): writing the same record again fails the same way.
const isDataError = (err: unknown) => /^(22|54)/.test(String((err as { code?: unknown }).code));

/**
 * Opens the store: connects (or starts PGlite), creates the schema and applies its migrations.
 * `write` puts a batch in one statement (one transaction; see `writeRecords` for the rare
 * follow-ups): each record once (`ON CONFLICT (id) DO NOTHING`),
 * only the newly inserted ones added to the per-minute rollups, the rejections kept with their
 * bytes and reason. A record whose id was stored with other content is a conflict: kept as
 * rejected, never billed (`writeRecords`). A record PostgreSQL itself refuses (e.g. a rollup sum
 * past numeric(20,0)) is kept as rejected instead of blocking the others.
 */
export async function createPostgresUsageStore(
  options: PostgresUsageStoreOptions = {},
): Promise<PostgresUsageStore> {
  const schema = options.schema ?? "billing";
  if (typeof schema !== "string" || !/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) {
    throw BillingError.invalid("schema", "must be 1..63 lowercase letters, digits or _");
  }
  const max = options.maxConnections ?? 4;
  if (!Number.isSafeInteger(max) || max < 1) {
    throw BillingError.invalid("maxConnections", "must be a positive integer");
  }
  const timeout = options.statementTimeoutMs ?? 30_000;
  if (!Number.isSafeInteger(timeout) || timeout < 1 || timeout > 2_147_483_647) {
    throw BillingError.invalid("statementTimeoutMs", "must be a positive integer of milliseconds");
  }
  const url = options.connectionString;
  if (url !== undefined && (typeof url !== "string" || !/^postgres(ql)?:\/\//.test(url))) {
    throw BillingError.invalid("connectionString", "must be a postgres:// URL");
  }
  let db: SqlClient | undefined;
  try {
    db = url === undefined ? await pgliteClient(options.dataDir) : pgClient(url, max, timeout);
    if (options.migrate === false) await checkMigrated(db, schema);
    else await migrate(db, schema);
  } catch (err) {
    await db?.close().catch(() => {});
    throw toStoreError(err, db?.where ?? "PostgreSQL", "cannot open the usage store");
  }
  return postgresUsageStore(db, schema);
}

function postgresUsageStore(db: SqlClient, schema: string): PostgresUsageStore {
  const s = `"${schema}"`;
  const statement = writeStatement(s);
  const run = (q: Query, records: readonly UsageRecord[], rejected: readonly RejectedRecord[]) =>
    writeRecords(q, statement, records, rejected);
  const result = (o: WriteOutcome, refused = 0): UsageWriteResult => ({
    inserted: o.inserted,
    ...(refused > 0 ? { rejected: refused } : {}),
    ...(o.conflicts.length > 0 ? { conflicts: o.conflicts } : {}),
    rejectedStored: o.rejectedStored,
  });

  /** The batch again, a record at a time (savepoints): those PostgreSQL refuses are rejected. */
  const isolate = (batch: UsageWrite): Promise<UsageWriteResult> =>
    db.transaction(async (q) => {
      const all: WriteOutcome = { inserted: 0, conflicts: [], rejectedStored: 0 };
      const refused: RejectedRecord[] = [];
      for (const [i, record] of batch.records.entries()) {
        await q("SAVEPOINT billing_record");
        try {
          const one = await run(q, [record], []);
          all.inserted += one.inserted;
          all.rejectedStored += one.rejectedStored;
          if (one.conflicts.length > 0) all.conflicts.push(i);
          await q("RELEASE SAVEPOINT billing_record");
        } catch (err) {
          if (!isDataError(err)) throw err;
          await q("ROLLBACK TO SAVEPOINT billing_record");
          refused.push(refusedRecord(record, err));
        }
      }
      all.rejectedStored += (await run(q, [], [...batch.rejected, ...refused])).rejectedStored;
      return result(all, refused.length);
    });

  let closed: Promise<void> | undefined;
  return {
    schema,
    where: db.where,
    async write(batch) {
      if (closed !== undefined) throw new BillingError("CLOSED", "the usage store is closed");
      try {
        return result(await run(db.query, batch.records, batch.rejected));
      } catch (err) {
        try {
          if (isDataError(err)) return await isolate(batch);
        } catch (again) {
          throw toStoreError(again, db.where, "cannot write usage");
        }
        throw toStoreError(err, db.where, "cannot write usage");
      }
    },
    usage: (options = {}) => usageTotals(db, s, options.since),
    query: (sql, params) => db.query(sql, params),
    close() {
      closed ??= db.close();
      return closed;
    },
  };
}

/** Usage summed over the minute rollups since `since` (default: all), by app, module and model. */
async function usageTotals(
  db: SqlClient,
  s: string,
  since = new Date(-62_135_596_800_000), // 0001-01-01: all
): Promise<UsageTotal[]> {
  const rows = await db.query<{
    app_id: string;
    key_sha256: string | null;
    module: string;
    model: string;
    usage: string;
    records: string;
  }>(
    `SELECT app_id, CASE WHEN app_id = '' THEN api_key_sha256 END AS key_sha256, module, model,
       sum(usage)::text AS usage, sum(records)::text AS records
     FROM ${s}.usage_minutely WHERE minute >= date_trunc('minute', $1::timestamptz, 'UTC')
     GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4`,
    [since.toISOString()],
  );
  return rows.map((r) => ({
    appId: r.app_id,
    apiKeySha256: r.key_sha256 ?? undefined,
    module: r.module,
    model: r.model,
    usage: BigInt(r.usage),
    records: Number(r.records),
  }));
}
