import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { warnAtExit } from "../../../../src/publisher/client/exit-warning.js";
import { freePort } from "../../../helpers/mosquitto.js";

// A process that ends (its event loop empty, or process.exit) with records its client still
// holds, and the client never closed: the SDK says so on its way out instead of exiting in
// silence (a review found 300 records lost with exit status 0 and no line at all).
const root = new URL("../../../..", import.meta.url).pathname;
const run = (port: number, n: number, spool?: string, mode = "") =>
  spawnSync(
    "node",
    [
      "--import",
      "tsx",
      join(root, "test/helpers/exit-child.ts"),
      String(port),
      String(n),
      spool ?? "-",
      mode,
    ],
    { cwd: root, encoding: "utf8", timeout: 30_000 },
  );

describe("a process that exits with records not acknowledged and the client not closed", () => {
  it("memory mode: says how many are lost", async () => {
    const r = run(await freePort(), 300);
    expect(r.stdout).toContain("reported 300");
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/exiting with 300 usage records not acknowledged: they are lost/);
  });

  it("with a spool: says they are kept for the next start", async () => {
    const dir = mkdtempSync(join(tmpdir(), "billing-exit-"));
    try {
      const r = run(await freePort(), 20, join(dir, "spool.db"));
      expect(r.stdout).toContain("reported 20");
      expect(r.stderr).toMatch(
        /exiting with 20 usage records not acknowledged: they stay in the spool/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("memory mode, the process exits while close() still flushes: says so too", async () => {
    const r = run(await freePort(), 50, undefined, "exit-while-closing");
    expect(r.stdout).toContain("reported 50");
    expect(r.stderr).toMatch(/exiting with 50 usage records not acknowledged: they are lost/);
  });

  it("with a spool, after close() ran out of time: says they are in the spool, not lost", async () => {
    const dir = mkdtempSync(join(tmpdir(), "billing-exit-"));
    try {
      const r = run(await freePort(), 5, join(dir, "spool.db"), "closed");
      expect(r.stdout).toContain("reported 5");
      expect(r.stdout).toContain("close resolved"); // with a spool nothing is lost
      expect(r.stderr).toMatch(/5 records stay in the spool and go out at the next start/);
      expect(r.stderr).toMatch(
        /exiting with 5 usage records not acknowledged: they stay in the spool/,
      );
      expect(r.stderr).not.toMatch(/lost/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("memory mode, after close() ran out of time: still says they are lost", async () => {
    const r = run(await freePort(), 5, undefined, "closed");
    expect(r.stdout).toMatch(
      /close rejected: \[TIMEOUT\] closed with 5 usage records not acknowledged/,
    );
    expect(r.stderr).toMatch(/exiting with 5 usage records not acknowledged: they are lost\s*$/m);
  });

  it("with a spool and records whose group commit had not run: says which part is lost", () => {
    const lines: string[] = [];
    const log = (_level: string, message: string) => lines.push(message);
    warnAtExit({ pending: 7, spooled: 5, closing: false }, log);
    warnAtExit({ pending: 0, spooled: 0, closing: false }, log);
    expect(lines).toEqual([
      "the process is exiting with 7 usage records not acknowledged: 5 stay in the spool and are sent by the next start; 2 were not stored yet (their reportUsage had not resolved): they are lost (await client.close() before the process ends, or use closeOnSignals)",
    ]);
  });
});
