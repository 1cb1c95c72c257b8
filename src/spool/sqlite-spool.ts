import { createRequire } from "node:module";
import type BetterSqlite3 from "better-sqlite3";
import { BillingError } from "../billing-error.js";
import type { RecordSpool, SpooledRecord } from "../publisher/record-spool.js";

/** Options of the SQLite spool: `new BillingClient({ spool: new SqliteSpool({ path }) })`. */
export interface SqliteSpoolOptions {
  /** The SQLite database file (created if missing). Required. */
  path: string;
  /**
   * SQLite `synchronous` in WAL mode. `"normal"`: a record that `reportUsage` resolved survives a
   * crash of the process; on power loss or an OS crash the last few transactions may be lost.
   * `"full"`: it also survives power loss, at the price of an fsync per group commit.
   * Default: `"normal"`.
   */
  synchronous?: "normal" | "full" | undefined;
  /**
   * Largest size of the database file; past it writes fail as on a full disk (SPOOL) until
   * acknowledged records free space. Default: no limit but the disk.
   */
  maxBytes?: number | undefined;
}

type Database = BetterSqlite3.Database;

function loadDriver(): typeof BetterSqlite3 {
  try {
    return createRequire(import.meta.url)("better-sqlite3") as typeof BetterSqlite3;
  } catch (err) {
    throw new BillingError(
      "SPOOL",
      "the spool needs better-sqlite3: npm install better-sqlite3@12 (v13 needs Node 22)",
      { cause: err },
    );
  }
}

function spoolError(path: string, what: string, err: unknown): BillingError {
  const code = (err as { code?: unknown }).code;
  const why =
    code === "SQLITE_BUSY" || code === "SQLITE_LOCKED"
      ? "it is in use by another process"
      : code === "SQLITE_FULL"
        ? "the disk (or spool.maxBytes) is full"
        : code === "SQLITE_NOTADB" || code === "SQLITE_CORRUPT"
          ? "the file is not a valid spool database (corrupt?)"
          : code === "SQLITE_READONLY" || code === "SQLITE_CANTOPEN"
            ? "it cannot be opened for writing (permissions, a directory, a missing folder?)"
            : String((err as Error).message ?? err);
  return new BillingError("SPOOL", `spool ${path}: ${what}: ${why}`, { cause: err });
}

/**
 * The durable outbox: a SQLite database in WAL mode, held with an exclusive lock (a second
 * process pointed at the same file is refused), one transaction per group of records.
 */
export class SqliteSpool implements RecordSpool {
  private db: Database | undefined;
  private readonly insert: BetterSqlite3.Statement;
  private readonly del: BetterSqlite3.Statement;
  private readonly appendTx: (records: readonly SpooledRecord[]) => void;
  private readonly removeTx: (seqs: readonly number[]) => void;

  constructor(private readonly options: SqliteSpoolOptions) {
    const Driver = loadDriver();
    const path = options.path;
    let db: Database | undefined;
    try {
      // timeout 0: a lock held elsewhere is an error at once, not a wait.
      db = new Driver(path, { timeout: 0 });
      db.pragma("locking_mode = EXCLUSIVE");
      db.pragma("journal_mode = WAL");
      db.pragma(`synchronous = ${options.synchronous === "full" ? "FULL" : "NORMAL"}`);
      db.exec(
        "CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, bytes BLOB NOT NULL)",
      );
      // Take the exclusive lock now (held until close), so a second process fails here.
      db.exec("BEGIN EXCLUSIVE; COMMIT");
      if (options.maxBytes !== undefined) {
        const pageSize = db.pragma("page_size", { simple: true }) as number;
        db.pragma(`max_page_count = ${Math.max(2, Math.floor(options.maxBytes / pageSize))}`);
      }
    } catch (err) {
      db?.close();
      throw spoolError(path, "cannot open", err);
    }
    this.db = db;
    this.insert = db.prepare("INSERT OR REPLACE INTO records (seq, id, bytes) VALUES (?, ?, ?)");
    this.del = db.prepare("DELETE FROM records WHERE seq = ?");
    this.appendTx = db.transaction((records: readonly SpooledRecord[]) => {
      for (const r of records) this.insert.run(r.seq, r.id, r.bytes);
    });
    const delRange = db.prepare("DELETE FROM records WHERE seq BETWEEN ? AND ?");
    // A PUBACK acknowledges a batch of consecutive seqs: each run is deleted in one statement.
    this.removeTx = db.transaction((seqs: readonly number[]) => {
      const sorted = Float64Array.from(seqs).sort();
      for (let i = 0; i < sorted.length; ) {
        let j = i;
        while (j + 1 < sorted.length && sorted[j + 1] === (sorted[j] as number) + 1) j++;
        if (j === i) this.del.run(sorted[i]);
        else delRange.run(sorted[i], sorted[j]);
        i = j + 1;
      }
    });
  }

  private open(): Database {
    if (this.db === undefined)
      throw new BillingError("SPOOL", `spool ${this.options.path} is closed`);
    return this.db;
  }

  load(): SpooledRecord[] {
    try {
      const rows = this.open()
        .prepare("SELECT seq, id, bytes FROM records ORDER BY seq")
        .all() as Array<{ seq: number; id: string; bytes: Buffer }>;
      return rows;
    } catch (err) {
      throw spoolError(this.options.path, "cannot read", err);
    }
  }

  append(records: readonly SpooledRecord[]): void {
    this.open();
    try {
      this.appendTx(records);
    } catch (err) {
      throw spoolError(this.options.path, "cannot store records", err);
    }
  }

  remove(seqs: readonly number[]): void {
    this.open();
    try {
      this.removeTx(seqs);
    } catch (err) {
      throw spoolError(this.options.path, "cannot delete acknowledged records", err);
    }
  }

  count(): number {
    return (this.open().prepare("SELECT count(*) AS n FROM records").get() as { n: number }).n;
  }

  /** Releases the file and its lock; an empty spool first gives its space back (VACUUM). */
  close(): void {
    const db = this.db;
    this.db = undefined;
    if (db === undefined) return;
    try {
      if ((db.prepare("SELECT count(*) AS n FROM records").get() as { n: number }).n === 0) {
        db.pragma("wal_checkpoint(TRUNCATE)");
        db.exec("VACUUM");
      }
    } finally {
      db.close();
    }
  }
}
