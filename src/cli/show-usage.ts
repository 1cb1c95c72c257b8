import { BillingError } from "../billing-error.js";
import { createPostgresUsageStore } from "../postgres/postgres-usage-store.js";
import type { CliIo } from "./cli-io.js";
import { type StoreValues, storeFlagsHelp, storeLocation } from "./store-flags.js";

export const showUsageHelp = `billing-sdk usage (--postgres URL | --pglite DIR) [--since DURATION] [--schema NAME]

Prints the usage that billing-sdk ingest stored, from the per-minute rollups
(<schema>.usage_minutely) since DURATION ago (90s, 30m, 1h, 7d, or "all";
default 1h), summed per app, module and model, as a table. Records that carry
no app (reported by a process that does not check keys, so does not know the
key list) are summed per key instead: "(unknown: " and the first 12 hex digits
of the key's SHA-256 ")".
${storeFlagsHelp}
  --schema NAME    schema of the tables (default billing)
Exit codes: 0 printed, 1 the database failed, 2 bad usage.`;

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** The start of `--since`: a duration ago (`90s`, `30m`, `1h`, `7d`), or undefined for `all`. */
export function sinceDate(value: string, now = Date.now()): Date | undefined {
  if (value === "all") return undefined;
  const m = /^(\d{1,9})([smhd])$/.exec(value);
  const ms = m === null ? Number.NaN : now - Number(m[1]) * (UNIT_MS[m[2] as string] as number);
  // Not before 0001-01-01, the earliest time a record can carry.
  if (!(ms >= -62_135_596_800_000)) {
    throw BillingError.invalid(
      "--since",
      'must be a duration like 90s, 30m, 1h, 7d (back to year 1 at most), or "all"',
    );
  }
  return new Date(ms);
}

/** `billing-sdk usage`: the rollups as a table. */
export async function showUsage(
  v: StoreValues & { since?: string | undefined; schema?: string | undefined },
  io: CliIo,
): Promise<number> {
  const location = storeLocation(v, true);
  const since = sinceDate(v.since ?? "1h");
  // A reader: no migration (a read-only role works; a mistyped schema is not created).
  const store = await createPostgresUsageStore({
    ...location,
    schema: v.schema,
    migrate: false,
  });
  try {
    const totals = await store.usage({ since });
    const rows = [
      ["app", "module", "model", "usage", "records"],
      ...totals.map((t) => [
        // No app: the record's process did not know the key list; the key tells them apart.
        t.appId === "" ? `(unknown: ${t.apiKeySha256?.slice(0, 12) ?? "?"})` : t.appId,
        t.module,
        t.model,
        t.usage.toLocaleString("en-US"),
        t.records.toLocaleString("en-US"),
      ]),
    ];
    const widths = [0, 1, 2, 3, 4].map((i) =>
      Math.max(...rows.map((r) => (r[i] as string).length)),
    );
    for (const r of rows) {
      io.out(
        r
          .map((cell, i) =>
            i >= 3 ? cell.padStart(widths[i] as number) : cell.padEnd(widths[i] as number),
          )
          .join("  ")
          .trimEnd(),
      );
    }
    io.out(
      `(${totals.length} row${totals.length === 1 ? "" : "s"} ${since === undefined ? "in all" : `since ${since.toISOString()}`}, ${store.where}, schema ${store.schema})`,
    );
    return 0;
  } finally {
    await store.close();
  }
}
