import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { BillingError } from "../billing-error.js";
import type { PostgresUsageStoreOptions } from "../postgres/postgres-usage-store.js";

/** The flags that say where the usage store is (`ingest`, `usage`). */
export interface StoreValues {
  postgres?: string | undefined;
  pglite?: string | undefined;
}

export const storeFlagsHelp = `  --postgres URL   postgres://user:password@host:5432/db (or env BILLING_POSTGRES_URL);
                   TLS: ?sslmode=verify-full&sslrootcert=ca.pem
  --pglite DIR     instead: an embedded PostgreSQL (PGlite) in DIR, no server; needs
                   the optional package: npm install @electric-sql/pglite@0.5. One
                   process at a time opens DIR: stop ingest before usage reads it`;

/**
 * Where the store is: `--pglite DIR` (an embedded PGlite in that directory), or `--postgres URL`
 * (else env BILLING_POSTGRES_URL). Both flags at once are refused; `--pglite` wins over the
 * environment variable (a flag says more than the environment). A `reader` (usage) is refused a
 * directory that holds no database yet.
 */
export function storeLocation(
  v: StoreValues,
  reader = false,
): Pick<PostgresUsageStoreOptions, "connectionString" | "dataDir"> {
  if (v.pglite !== undefined) {
    if (v.postgres !== undefined) {
      throw BillingError.invalid(
        "--pglite",
        "and --postgres name two stores: give one (--pglite DIR embedded, --postgres URL a server)",
      );
    }
    if (v.pglite.trim() === "" || /^[a-z0-9-]+:\/\//i.test(v.pglite)) {
      throw BillingError.invalid("--pglite", "must be a directory");
    }
    const dataDir = resolve(v.pglite);
    // A reader creates nothing: a mistyped directory is said, not made into a new database.
    if (reader && !existsSync(join(dataDir, "PG_VERSION"))) {
      throw new BillingError(
        "STORE",
        `no database in ${dataDir} (billing-sdk ingest --pglite ${v.pglite} makes one)`,
      );
    }
    return { dataDir };
  }
  const url = v.postgres ?? process.env.BILLING_POSTGRES_URL;
  if (url === undefined || url === "") {
    throw BillingError.invalid(
      "--postgres",
      "is required (or env BILLING_POSTGRES_URL), or --pglite DIR for an embedded database",
    );
  }
  return { connectionString: url };
}
