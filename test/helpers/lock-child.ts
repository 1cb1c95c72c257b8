// One of several processes racing for the lock of a PGlite directory, for the lock tests:
// `node --import tsx lock-child.ts <dir> <holdMs>`. Prints "ready", then for each line
// "<round> <goAt>" on stdin: spins until goAt (ms since the epoch, so that the processes try at
// the same moment), takes the lock, holds it holdMs (busy, as a process using the database would
// be), releases it, and prints one JSON line: {round, ok, t0, t1} or {round, ok: false, message}.
import { createInterface } from "node:readline";
import { lockPgliteDir } from "../../src/postgres/pglite-lock.js";

const [dir, holdMs] = process.argv.slice(2) as [string, string];
const spinUntil = (t: number) => {
  while (Date.now() < t) {
    // spin: a timer would let the processes start apart
  }
};
console.log("ready");
for await (const line of createInterface({ input: process.stdin })) {
  const [round, goAt] = line.split(" ").map(Number) as [number, number];
  spinUntil(goAt);
  try {
    const release = lockPgliteDir(dir);
    const t0 = Date.now();
    spinUntil(t0 + Number(holdMs));
    const t1 = Date.now();
    release();
    console.log(JSON.stringify({ round, ok: true, t0, t1 }));
  } catch (err) {
    console.log(JSON.stringify({ round, ok: false, message: (err as Error).message }));
  }
}
