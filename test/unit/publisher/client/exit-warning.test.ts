import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
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
});
