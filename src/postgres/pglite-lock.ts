import { randomUUID } from "node:crypto";
import {
  linkSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { BillingError } from "../billing-error.js";

/** The lock file billing-sdk keeps in an embedded PGlite's directory while it has it open. */
export const PGLITE_LOCK_FILE = "billing-sdk.lock";

/**
 * How long a lock file that names no owner (empty or half-written: another process, of an
 * earlier billing-sdk that wrote it in two steps, is writing it) counts as in use; older, it is
 * left from a crash and taken over.
 */
const UNWRITTEN_MS = 5000;
/** How long a takeover (the guard file held for it) may take before it counts as abandoned. */
const TAKEOVER_MS = 5000;

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
    return undefined; // empty, half-written or not ours
  }
}

/** Whether the lock's owner still runs: a live pid on this machine that is not a past us. */
function alive(o: Owner): boolean {
  if (o.pid === process.pid) return held.has(o.token);
  try {
    process.kill(o.pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: unknown }).code === "EPERM"; // alive, another user's
  }
}

const codeOf = (err: unknown) => (err as { code?: unknown }).code;

/** Sleeps `ms` without returning to the event loop (the lock is taken synchronously). */
const pause = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/**
 * The text of the lock file at `path` and its age, or undefined when there is none. A lock file
 * that is not a plain file (a symbolic link, dangling or not) is refused: it is not one of ours.
 */
function lockFile(path: string): { text: string; ageMs: number } | undefined {
  try {
    const stat = lstatSync(path);
    if (!stat.isFile()) {
      const what = stat.isSymbolicLink()
        ? `a symbolic link (to ${JSON.stringify(readlinkSync(path))})`
        : "not a plain file";
      throw new BillingError(
        "STORE",
        `cannot lock the embedded PGlite directory: its lock file ${path} is ${what}, not one billing-sdk made: remove it (billing-sdk keeps a plain file there while a process has the directory open)`,
      );
    }
    return { text: readFileSync(path, "utf8"), ageMs: Date.now() - stat.mtimeMs };
  } catch (err) {
    if (codeOf(err) === "ENOENT") return undefined;
    throw err;
  }
}

const read = (path: string) => lockFile(path)?.text;

/**
 * Makes the file `path` holding `text` in one step, if no file is there: written aside, then
 * hard-linked into place (which fails if `path` exists), so that nobody ever reads it empty or
 * half-written. False when `path` exists. (On a file system without hard links, created with
 * O_EXCL and written after: a reader may see it empty, which it takes as in use.)
 */
function createWith(path: string, text: string, token: string): boolean {
  const temp = `${path}.${token}.new`;
  writeFileSync(temp, text, { flag: "wx", mode: 0o644 });
  try {
    linkSync(temp, path);
    return true;
  } catch (err) {
    if (codeOf(err) === "EEXIST") return false;
    if (!["EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS"].includes(codeOf(err) as string)) throw err;
    try {
      writeFileSync(path, text, { flag: "wx", mode: 0o644 });
      return true;
    } catch (again) {
      if (codeOf(again) === "EEXIST") return false;
      throw again;
    }
  } finally {
    unlinkSync(temp);
  }
}

/** Removes the file at `path` if it still holds `text`: moved aside first, put back if it changed. */
function removeIfUnchanged(path: string, text: string, token: string): void {
  const aside = `${path}.${token}.old`;
  try {
    renameSync(path, aside);
  } catch (err) {
    if (codeOf(err) === "ENOENT") return;
    throw err;
  }
  if (read(aside) !== text) {
    try {
      linkSync(aside, path); // changed hands meanwhile: put back, unless replaced again
    } catch {
      // a newer one is in place
    }
  }
  unlinkSync(aside);
}

/**
 * Removes the stale lock at `path` (its text `stale`), unless it changed meanwhile. Takeovers
 * are done one at a time, under a guard file made like a lock: two processes that found the
 * same stale lock cannot remove each other's fresh one. A guard older than `TAKEOVER_MS` was
 * left by a process killed in the middle of one (a takeover takes microseconds).
 */
function takeOver(path: string, stale: string, mine: Owner): void {
  const guard = `${path}.takeover`;
  const text = JSON.stringify(mine);
  if (!createWith(guard, text, mine.token)) {
    const other = lockFile(guard);
    if (other !== undefined && other.ageMs >= TAKEOVER_MS) {
      removeIfUnchanged(guard, other.text, mine.token);
    } else pause(5); // another process takes it over now: look again after it
    return;
  }
  try {
    if (read(path) === stale) unlinkSync(path);
  } finally {
    if (read(guard) === text) unlinkSync(guard);
  }
}

/**
 * Takes the lock of the PGlite directory `dir` for this process and returns its release. PGlite
 * itself lets several processes open one directory at once, and two of them writing corrupt it:
 * a live holder (on this machine) is refused with `STORE` naming it. A lock whose process is gone
 * (a crash, SIGKILL) is taken over; of several processes that find it at once, one gets it.
 */
export function lockPgliteDir(dir: string): () => void {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, PGLITE_LOCK_FILE);
  const mine: Owner = { pid: process.pid, token: randomUUID() };
  const text = JSON.stringify(mine);
  const fail = (err: unknown) =>
    err instanceof BillingError
      ? err
      : new BillingError("STORE", `cannot lock ${dir}: ${(err as Error).message}`, { cause: err });
  try {
    for (let attempt = 0; attempt < 50; attempt++) {
      if (createWith(path, text, mine.token)) {
        held.add(mine.token);
        return () => {
          held.delete(mine.token);
          if (read(path) === text) unlinkSync(path);
        };
      }
      const found = lockFile(path);
      if (found === undefined) continue; // released meanwhile
      const owner = ownerOf(found.text);
      if (owner === undefined ? found.ageMs < UNWRITTEN_MS : alive(owner)) {
        throw inUse(dir, path, owner);
      }
      takeOver(path, found.text, mine);
    }
  } catch (err) {
    throw fail(err);
  }
  throw new BillingError("STORE", `cannot lock ${dir}: its lock keeps changing hands`);
}

function inUse(dir: string, path: string, owner: Owner | undefined): BillingError {
  const who =
    owner === undefined
      ? "another process (its lock file is being written)"
      : owner.pid === process.pid
        ? "this process"
        : `process ${owner.pid}`;
  return new BillingError(
    "STORE",
    `embedded PGlite in ${dir} is in use by ${who}: PGlite lets one process at a time open its directory (stop that one first, e.g. billing-sdk ingest; if no billing-sdk process uses it, delete ${path})`,
  );
}
