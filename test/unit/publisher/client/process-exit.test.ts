import { execFile } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { AedesBroker } from "../../../helpers/aedes-broker.js";

// No leaked handles: a process that uses the SDK and closes it exits by itself, and so does
// one whose client never reached a broker (all timers unref'ed) once it is closed.
const run = promisify(execFile);
const root = new URL("../../../..", import.meta.url).pathname;
let broker: AedesBroker;
beforeAll(async () => {
  broker = await AedesBroker.create();
});
const scripts: string[] = [];
afterAll(async () => {
  for (const s of scripts) rmSync(s, { force: true });
  await broker.close();
});

function script(name: string, body: string): string {
  // The pid: two runs of the suite in one checkout never share (or delete) a script.
  const path = join(root, "test", `.tmp-${name}-${process.pid}.ts`);
  writeFileSync(path, `import { BillingClient } from "../src/index.js";\n${body}\n`);
  scripts.push(path);
  return path;
}

it("exits by itself after close(), with records delivered", async () => {
  const path = script(
    "exit-ok",
    `const c = new BillingClient({ brokerHost: "127.0.0.1", brokerPort: ${broker.port}, tls: false, heartbeatIntervalMs: 50 });
     await c.connect();
     for (let i = 0; i < 20; i++) await c.reportUsage({ apiKey: "k", module: "llm", model: "m", usage: i });
     await c.close();
     console.log("closed", c.stats().published);`,
  );
  const { stdout } = await run("node", ["--import", "tsx", path], { cwd: root, timeout: 15_000 });
  expect(stdout.trim()).toBe("closed 20");
});

it("exits by itself when the broker was never reachable and close() gave up", async () => {
  const path = script(
    "exit-down",
    `const c = new BillingClient({ brokerHost: "127.0.0.1", brokerPort: 9, tls: false, logger: () => {} });
     await c.reportUsage({ apiKey: "k", module: "llm", model: "m", usage: 1 });
     await c.close(100).catch((e) => console.log(e.code));`,
  );
  const { stdout } = await run("node", ["--import", "tsx", path], { cwd: root, timeout: 15_000 });
  expect(stdout.trim()).toBe("TIMEOUT");
});
