import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { expect, it } from "vitest";
import { cpuMs } from "../../bench/process-cpu.js";
import { sleep } from "../../helpers/time.js";

// The ingest bench reads PostgreSQL's CPU as the postmaster's and its children's: a child that
// came and went (an autovacuum worker) must count too, through the parent's cutime/cstime.
// A busy loop that ends by itself within 5 s, even if this test is killed before its `finally`
// (its process group is apart from the test runner's, so a Ctrl-C never reaches it).
const BUSY = "bash -c 'while (( SECONDS < 5 )); do :; done'";

/** A shell running `script` in its own process group (its jobs too); `stop` kills the group. */
function shell(script: string): { proc: ChildProcess; stop: () => Promise<void> } {
  const proc = spawn("bash", ["-c", script], { detached: true, stdio: "ignore" });
  return {
    proc,
    stop: async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = once(proc, "exit");
      process.kill(-(proc.pid as number), "SIGKILL");
      await exited;
    },
  };
}

it.runIf(process.platform === "linux")("counts the CPU of a child that has exited", async () => {
  // The shell itself uses next to nothing: what counts is its child's 0.5 s busy loop, over
  // (killed and waited for).
  const s = shell(`${BUSY} & b=$!; sleep 0.5; kill $b; wait $b; sleep 3`);
  try {
    await sleep(1200);
    expect(cpuMs(s.proc.pid)).toBeGreaterThan(50);
  } finally {
    await s.stop();
  }
});

it.runIf(process.platform === "linux")("counts the CPU of a child that runs", async () => {
  const s = shell(`${BUSY} & wait`);
  try {
    await sleep(700);
    const a = cpuMs(s.proc.pid);
    expect(a).toBeGreaterThan(50);
    await sleep(300);
    expect(cpuMs(s.proc.pid)).toBeGreaterThan(a);
  } finally {
    await s.stop();
  }
});

it("is NaN for no process", () => {
  expect(Number.isNaN(cpuMs(undefined))).toBe(true);
  expect(Number.isNaN(cpuMs(2 ** 30))).toBe(true);
});
