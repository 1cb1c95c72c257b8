/**
 * billing-sdk/postgres: the usage store in PostgreSQL, an optional part (needs `pg` 8 for a
 * server, or `@electric-sql/pglite` for the embedded default).
 *
 * @module billing-sdk/postgres
 */

export type {
  PostgresUsageStore,
  PostgresUsageStoreOptions,
  UsageTotal,
} from "./postgres-usage-store.js";
export { createPostgresUsageStore } from "./postgres-usage-store.js";
