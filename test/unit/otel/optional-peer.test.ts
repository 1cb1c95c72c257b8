import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { expect, it } from "vitest";

// @opentelemetry/api is an optional peer dependency: the core (and the other optional parts)
// must load without it. A child process runs with a loader hook that fails every import of
// @opentelemetry/*; the core loads and works, and only billing-sdk/otel needs the package.
const run = promisify(execFile);
const root = new URL("../../..", import.meta.url).pathname;

it("the core entry and the other subpaths never import @opentelemetry/api; billing-sdk/otel does", async () => {
  const script = `
    const core = await import("./src/index.ts");
    const c = new core.BillingClient({ brokerPort: 9, tls: false, logger: () => {} });
    core.closeOnSignals(c)();
    await c.close(10).catch(() => {});
    await import("./src/consumer/index.ts");
    await import("./src/spool/index.ts");
    await import("./src/postgres/index.ts");
    console.log("core loaded");
    await import("./src/otel/index.ts").then(
      () => console.log("otel loaded"),
      (e) => console.log("otel refused: " + e.message),
    );`;
  const { stdout } = await run(
    "node",
    [
      "--import",
      "tsx",
      "--import",
      "./test/helpers/forbid-otel.mjs",
      "--input-type=module",
      "-e",
      script,
    ],
    { cwd: root, timeout: 30_000 },
  );
  expect(stdout).toContain("core loaded");
  // The hook works: the otel entry, which needs the package, is refused.
  expect(stdout).toContain("otel refused: forbidden import of @opentelemetry/api");
});
