import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { lockPgliteDir, PGLITE_LOCK_FILE } from "../../../src/postgres/pglite-lock.js";

// The lock billing-sdk keeps in an embedded PGlite's directory: PGlite lets two processes open
// one directory and corrupt it, so at most one may hold the lock at any time, also when several
// take over a stale one at once (a review saw two holders at once in 4 rounds of 6: the lock
// file was created empty and written after, and a reader took the empty file for a stale one).
const root = new URL("../../..", import.meta.url).pathname;
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "billing-lock-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type Outcome =
  | { round: number; ok: true; t0: number; t1: number }
  | { round: number; ok: false; message: string };

/** A lock-child.ts process, and the outcomes it printed so far. */
function child(where: string, holdMs: number) {
  const proc: ChildProcessWithoutNullStreams = spawn(
    "node",
    ["--import", "tsx", join(root, "test/helpers/lock-child.ts"), where, String(holdMs)],
    { cwd: root },
  );
  const outcomes: Outcome[] = [];
  let ready: () => void = () => {};
  const started = new Promise<void>((resolve) => (ready = resolve));
  createInterface({ input: proc.stdout }).on("line", (line) => {
    if (line === "ready") ready();
    else outcomes.push(JSON.parse(line) as Outcome);
  });
  return { proc, outcomes, started };
}

describe("the PGlite directory lock across processes", () => {
  it("2 to 6 processes taking over a stale lock at once: at most one holds it at any time", async () => {
    const where = join(dir, "race");
    const lock = join(where, PGLITE_LOCK_FILE);
    mkdirSync(where);
    const children = Array.from({ length: 6 }, () => child(where, 60));
    try {
      await Promise.all(children.map((c) => c.started));
      const rounds = 20;
      let overlaps = 0;
      for (let round = 0; round < rounds; round++) {
        const n = 2 + (round % 5);
        // Left by a process that is gone (pid 2^22 + 1 is above Linux's pid_max).
        writeFileSync(lock, JSON.stringify({ pid: 4_194_305, token: `stale-${round}` }));
        const goAt = Date.now() + 150;
        for (const c of children.slice(0, n)) c.proc.stdin.write(`${round} ${goAt}\n`);
        const mine = () =>
          children.slice(0, n).map((c) => c.outcomes.find((o) => o.round === round));
        while (mine().some((o) => o === undefined)) await new Promise((r) => setTimeout(r, 10));
        const outcomes = mine() as Outcome[];
        const holds = outcomes.flatMap((o) => (o.ok ? [o] : [])).sort((a, b) => a.t0 - b.t0);
        for (let i = 1; i < holds.length; i++) {
          if ((holds[i] as { t0: number }).t0 < (holds[i - 1] as { t1: number }).t1) overlaps++;
        }
        // The stale lock is taken over: someone holds it; the others are told who has it.
        expect(holds.length, `round ${round}`).toBeGreaterThan(0);
        for (const o of outcomes) {
          if (!o.ok) expect(o.message).toMatch(/is in use by (process \d+|another process)/);
        }
      }
      expect(overlaps, "holds that overlapped another").toBe(0);
    } finally {
      for (const c of children) c.proc.kill();
    }
  }, 120_000);
});

describe("the PGlite directory lock in one process", () => {
  it("a lock file that names no owner yet is in use while young, stale once old", () => {
    const where = join(dir, "unwritten");
    const lock = join(where, PGLITE_LOCK_FILE);
    const release = lockPgliteDir(where); // makes the directory
    release();
    writeFileSync(lock, ""); // another process has just created it and not written it yet
    expect(() => lockPgliteDir(where)).toThrow(
      /is in use by another process \(its lock file is being written\)/,
    );
    writeFileSync(lock, '{"pid":12'); // half-written
    expect(() => lockPgliteDir(where)).toThrow(/being written/);
    const old = new Date(Date.now() - 60_000);
    utimesSync(lock, old, old); // left from a crash a minute ago
    lockPgliteDir(where)();
  });

  it("a symbolic link as the lock file is refused, saying so (a dangling one too)", () => {
    const where = join(dir, "symlink");
    lockPgliteDir(where)();
    const lock = join(where, PGLITE_LOCK_FILE);
    symlinkSync(join(dir, "nowhere"), lock);
    expect(() => lockPgliteDir(where)).toThrow(
      `cannot lock the embedded PGlite directory: its lock file ${lock} is a symbolic link (to ${JSON.stringify(join(dir, "nowhere"))}), not one billing-sdk made: remove it`,
    );
    rmSync(lock);
    writeFileSync(join(dir, "target"), "x");
    symlinkSync(join(dir, "target"), lock);
    expect(() => lockPgliteDir(where)).toThrow(/is a symbolic link/);
  });
});
