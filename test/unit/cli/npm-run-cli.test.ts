import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";

describe("the CLI in a fresh clone", () => {
  it("runs from the sources with npm run cli, no build needed", () => {
    const root = new URL("../../..", import.meta.url).pathname;
    const out = execFileSync("npm", ["run", "-s", "cli", "--", "doctor", "--help"], {
      cwd: root,
      encoding: "utf8",
    });
    expect(out).toMatch(/^billing-sdk doctor/m);
  });
});
