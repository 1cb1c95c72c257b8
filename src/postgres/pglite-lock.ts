import { randomUUID } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BillingError } from "../billing-error.js";

/** The lock file billing-sdk keeps in an embedded PGlite's directory while it has it open. */
export const PGLITE_LOCK_FILE = "billing-sdk.lock";

/** Locks this process holds (their tokens): a lock with this pid but another token is stale. */
const held = new Set<string>();

/**
 * The directory on disk of a PGlite `dataDir`: a path, or `file://` and a path; undefined for one
 * that is not on this machine's disk (none: in memory; `memory://`, `idb://`…).
 */
export function pgliteDirOf(dataDir: string | undefined): string | undefined {
  if (dataDir === undefined || dataDir === "") return undefined;
  if (dataDir.startsWith("file://")) return dataDir.slice(7) || undefined;
  return /^[a-z0-9-]+:\/\//i.test(dataDir) ? undefined : dataDir;
}

interface Owner {
  pid: number;
  token: string;
}

function ownerOf(text: string): Owner | undefined {
  try {
    const o = JSON.parse(text) as Partial<Owner>;
    return typeof o.pid === "number" && typeof o.token === "string"
      ? { pid: o.pid, token: o.token }
      : undefined;
  } catch {
    return undefined; // half-written or not ours: treated as stale
  }
}

/** Whether the lock's owner still runs: a live pid on this machine that is not a past us. */
function alive(o: Owner | undefined): boolean {
  if (o === undefined) return false;
  if (o.pid === process.pid) return held.has(o.token);
  try {
    process.kill(o.pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: unknown }).code === "EPERM"; // alive, another user's
  }
}

const read = (path: string): string | undefined => {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    if ((err as { code?: unknown }).code === "ENOENT") return undefined;
    throw err;
  }
};

/**
 * Takes the lock of the PGlite directory `dir` for this process and returns its release. PGlite
 * itself lets several processes open one directory at once, and two of them writing corrupt it:
 * a live holder (on this machine) is refused with `STORE` naming it. A lock whose process is gone
 * (a crash, SIGKILL) is taken over.
 */
export function lockPgliteDir(dir: string): () => void {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, PGLITE_LOCK_FILE);
  const mine: Owner = { pid: process.pid, token: randomUUID() };
  const text = JSON.stringify(mine);
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      writeFileSync(path, text, { flag: "wx", mode: 0o644 });
      held.add(mine.token);
      return () => {
        held.delete(mine.token);
        if (read(path) === text) unlinkSync(path);
      };
    } catch (err) {
      if ((err as { code?: unknown }).code !== "EEXIST") {
        throw new BillingError("STORE", `cannot lock ${dir}: ${(err as Error).message}`, {
          cause: err,
        });
      }
    }
    const found = read(path);
    if (found === undefined) continue; // released meanwhile
    const owner = ownerOf(found);
    if (alive(owner)) {
      const who = owner?.pid === process.pid ? "this process" : `process ${owner?.pid}`;
      throw new BillingError(
        "STORE",
        `embedded PGlite in ${dir} is in use by ${who}: PGlite lets one process at a time open its directory (stop that one first, e.g. billing-sdk ingest; if no billing-sdk process uses it, delete ${path})`,
      );
    }
    // Stale: moved aside atomically, so that of two processes taking it over only one does.
    const aside = `${path}.${mine.token}`;
    try {
      renameSync(path, aside);
    } catch (err) {
      if ((err as { code?: unknown }).code === "ENOENT") continue;
      throw err;
    }
    const moved = read(aside);
    unlinkSync(aside);
    if (moved !== found) {
      // A fresh lock was taken between the read and the rename: put it back, and refuse.
      try {
        if (moved !== undefined) writeFileSync(path, moved, { flag: "wx" });
      } catch {
        // a third process locked it meanwhile: that lock stands
      }
      throw new BillingError("STORE", `embedded PGlite in ${dir} is in use by another process`);
    }
  }
  throw new BillingError("STORE", `cannot lock ${dir}: its lock keeps changing hands`);
}
