// CPU time of other processes (Linux /proc), for the benches' per-record costs: a process and
// the children it has now (PostgreSQL's postmaster and its backends). A child that exits takes
// its time with it: read while the processes of a phase still run.

import { readdirSync, readFileSync } from "node:fs";

const TICK_MS = 10; // USER_HZ is 100 on Linux

/** [ppid, utime + stime in ms] of `pid`, or undefined when it is gone. */
function stat(pid: number): [number, number] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name is in parentheses and may hold spaces: the fields follow the last ")".
    const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return [Number(f[1]), (Number(f[11]) + Number(f[12])) * TICK_MS];
  } catch {
    return undefined;
  }
}

/** CPU milliseconds used so far by `pid` and its current children. */
export function cpuMs(pid: number | undefined): number {
  if (pid === undefined) return 0;
  let ms = stat(pid)?.[1] ?? 0;
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const s = stat(Number(name));
    if (s !== undefined && s[0] === pid) ms += s[1];
  }
  return ms;
}
