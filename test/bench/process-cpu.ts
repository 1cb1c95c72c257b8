// CPU time of other processes (Linux /proc), for the benches' per-record costs: a process, the
// children it has now (PostgreSQL's postmaster and its backends) and those it has already waited
// for (cutime, cstime: an autovacuum worker that came and went). Precision: a 10 ms tick per
// process per reading. NaN where there is no /proc.

import { existsSync, readdirSync, readFileSync } from "node:fs";

const TICK_MS = 10; // USER_HZ is 100 on Linux

interface Stat {
  ppid: number;
  /** utime + stime, ms. */
  own: number;
  /** cutime + cstime, ms: its children that exited and were waited for. */
  reaped: number;
}

function stat(pid: number): Stat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name is in parentheses and may hold spaces: the fields follow the last ")",
    // from field 3 (state) on: ppid is field 4, utime..cstime fields 14..17.
    const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return {
      ppid: Number(f[1]),
      own: (Number(f[11]) + Number(f[12])) * TICK_MS,
      reaped: (Number(f[13]) + Number(f[14])) * TICK_MS,
    };
  } catch {
    return undefined;
  }
}

/** CPU milliseconds used so far by `pid` and its children, live or exited; NaN without /proc. */
export function cpuMs(pid: number | undefined): number {
  if (pid === undefined || !existsSync("/proc/self/stat")) return Number.NaN;
  const root = stat(pid);
  if (root === undefined) return Number.NaN;
  let ms = root.own + root.reaped;
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const s = stat(Number(name));
    if (s !== undefined && s.ppid === pid) ms += s.own + s.reaped;
  }
  return ms;
}
