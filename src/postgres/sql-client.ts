import { createRequire } from "node:module";
import type { PGlite } from "@electric-sql/pglite";
import type Pg from "pg";
import { BillingError } from "../billing-error.js";
import { lockPgliteDir, pgliteDirOf } from "./pglite-lock.js";

/** One SQL statement with `$1…` parameters; resolves with its rows. */
export type Query = <R extends object = Record<string, unknown>>(
  sql: string,
  params?: readonly unknown[],
) => Promise<R[]>;

/** What the store needs of a PostgreSQL: node-postgres against a server, or PGlite embedded. */
export interface SqlClient {
  /** A statement on its own (its own transaction). */
  readonly query: Query;
  /** `fn`'s statements in one transaction on one connection: COMMIT when it resolves. */
  transaction<T>(fn: (query: Query) => Promise<T>): Promise<T>;
  close(): Promise<void>;
  /** Where the data is, for messages (never the password). */
  readonly where: string;
}

const load = <T>(name: string, install: string): T => {
  try {
    return createRequire(import.meta.url)(name) as T;
  } catch (err) {
    throw new BillingError("STORE", `billing-sdk/postgres needs ${name}: npm install ${install}`, {
      cause: err,
    });
  }
};

/** The connection string without its password, for messages. */
function redact(connectionString: string): string {
  try {
    const url = new URL(connectionString);
    url.password = "";
    url.search = "";
    return url.toString().replace(/^(postgres(?:ql)?:\/\/[^:@/]*):?@/, "$1@");
  } catch {
    return "postgres (connection string not a URL)";
  }
}

/** A node-postgres pool on `connectionString` (pg 8, loaded only now). */
export function pgClient(
  connectionString: string,
  maxConnections: number,
  statementTimeoutMs: number,
): SqlClient {
  const pg = load<typeof Pg>("pg", "pg@8");
  // A server that never answers fails the connection after 10 s instead of hanging; TCP
  // keepalive finds a connection whose peer vanished.
  // statement_timeout: the server ends a statement stuck (behind a lock, say) after it, so a
  // write never hangs, and pool.end() at close never waits longer.
  const pool = new pg.Pool({
    connectionString,
    max: maxConnections,
    connectionTimeoutMillis: 10_000,
    keepAlive: true,
    statement_timeout: statementTimeoutMs,
  });
  // An idle connection that breaks (a server restart) is reported here; it is dropped and the
  // next query opens another. Without a listener it would end the process.
  pool.on("error", () => {});
  const query: Query = async (sql, params) =>
    (await pool.query(sql, params as unknown[] | undefined)).rows;
  return {
    query,
    where: redact(connectionString),
    async transaction(fn) {
      const client = await pool.connect();
      let broken: Error | undefined;
      try {
        await client.query("BEGIN");
        const result = await fn(async (sql, params) => {
          return (await client.query(sql, params as unknown[] | undefined)).rows;
        });
        await client.query("COMMIT");
        return result;
      } catch (err) {
        await client.query("ROLLBACK").catch((e: Error) => {
          broken = e;
        });
        throw err;
      } finally {
        client.release(broken);
      }
    },
    close: () => pool.end(),
  };
}

/**
 * An embedded PGlite in `dataDir`, or in memory (loaded only now). A directory is locked while
 * it is open (`pglite-lock.ts`): a second process is refused instead of corrupting it.
 */
export async function pgliteClient(dataDir: string | undefined): Promise<SqlClient> {
  const { PGlite: Driver } = load<{ PGlite: typeof PGlite }>(
    "@electric-sql/pglite",
    "@electric-sql/pglite@0.5",
  );
  const dir = pgliteDirOf(dataDir);
  const unlock = dir === undefined ? () => {} : lockPgliteDir(dir);
  let db: PGlite;
  try {
    db = new Driver(dataDir);
    await db.waitReady;
  } catch (err) {
    unlock();
    throw err;
  }
  const query: Query = async (sql, params) =>
    (await db.query(sql, params as unknown[] | undefined)).rows as never;
  return {
    query,
    where: dataDir === undefined ? "embedded PGlite (in memory)" : `embedded PGlite in ${dataDir}`,
    transaction: (fn) =>
      db.transaction((tx) =>
        fn(
          async (sql, params) =>
            (await tx.query(sql, params as unknown[] | undefined)).rows as never,
        ),
      ),
    close: () => db.close().finally(unlock),
  };
}
