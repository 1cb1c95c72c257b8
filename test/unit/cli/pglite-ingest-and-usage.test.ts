import type { ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KeyState } from "../../../gen/billing/v1/usage_pb.js";
import { main } from "../../../src/cli/main.js";
import { BillingClient, hashApiKey } from "../../../src/index.js";
import { createPostgresUsageStore } from "../../../src/postgres/index.js";
import { PGLITE_LOCK_FILE } from "../../../src/postgres/pglite-lock.js";
import { AedesBroker } from "../../helpers/aedes-broker.js";
import { captureIo } from "../../helpers/cli-io.js";
import { keyUpdate, testPublicKeys } from "../../helpers/fixtures.js";
import { startIngest } from "../../helpers/ingest-run.js";
import { runCli } from "../../helpers/run-cli.js";
import { waitUntil } from "../../helpers/time.js";

// `billing-sdk ingest --pglite DIR` and `billing-sdk usage --pglite DIR`, through the real CLI in
// child processes: the embedded PostgreSQL from the command line, not only from code. Records
// come from two producers on an embedded broker: one that checks keys (it has the signed key
// list, so its records carry the app) and one that only reports (no key list: no app), whose
// totals `usage` shows per key as "(unknown: <12 hex of the key's SHA-256>)".
let broker: AedesBroker;
let dir: string;
let dataDir: string;
const children: ChildProcess[] = [];
const brokerFlag = () => ["--broker", `mqtt://127.0.0.1:${broker.port}`];

beforeAll(async () => {
  broker = await AedesBroker.create();
  dir = mkdtempSync(join(tmpdir(), "billing-pglite-cli-"));
  dataDir = join(dir, "db");
});
afterAll(async () => {
  for (const c of children) c.kill("SIGKILL");
  await broker.close();
  rmSync(dir, { recursive: true, force: true });
});

async function report(
  options: { keyUpdatePublicKeys?: typeof testPublicKeys },
  records: Array<[key: string, module: string, model: string, usage: number]>,
  before?: (c: BillingClient) => Promise<void>,
) {
  const c = new BillingClient({
    brokerHost: "127.0.0.1",
    brokerPort: broker.port,
    tls: false,
    heartbeatIntervalMs: 0,
    logger: () => {},
    ...options,
  });
  try {
    await c.connect();
    await before?.(c);
    for (const [apiKey, module, model, usage] of records) {
      await c.reportUsage({ apiKey, module, model, usage });
    }
    await c.flush(10_000);
  } finally {
    await c.close(5000);
  }
}

describe("ingest and usage on an embedded PGlite directory", () => {
  it("ingest stores into DIR; usage reads it once ingest stopped, and says clearly while it runs", async () => {
    const ingest = await startIngest(
      [...brokerFlag(), "--pglite", dataDir, "--progress", "1", "--client-id", "pglite-ingest"],
      children,
    );
    expect(ingest.lines.find((l) => l.startsWith("ingest: consuming"))).toContain(
      `into embedded PGlite in ${dataDir}, schema billing`,
    );
    // A process that checks keys: the key list (signed) gives its records their app.
    await report(
      { keyUpdatePublicKeys: testPublicKeys },
      [
        ["key-gamma", "tts", "t1", 5],
        ["key-gamma", "tts", "t1", 7],
      ],
      async (c) => {
        // Subscribed once it asks for the list.
        await waitUntil(
          () => broker.payloads("billing/keys/request").length > 0,
          5000,
          "subscribed",
        );
        await broker.publish(
          "billing/keys/update",
          keyUpdate([{ key: "key-gamma", state: KeyState.ACTIVE, appId: "app-known" }], true),
        );
        await waitUntil(() => c.keys.loaded, 5000, "the key list");
      },
    );
    // A process that only reports: no key list, no app.
    await report({}, [
      ["key-alpha", "llm", "m1", 1],
      ["key-alpha", "llm", "m1", 2],
      ["key-alpha", "llm", "m1", 3],
      ["key-beta", "llm", "m1", 10],
      ["key-beta", "llm", "m1", 20],
    ]);
    await waitUntil(() => ingest.stored() === 7, 20_000, "7 records stored");

    // While ingest has DIR open, a reader is refused, saying by whom, and nothing is changed.
    const busy = await runCli(["usage", "--pglite", dataDir]);
    expect(busy.code).toBe(1);
    expect(busy.stderr).toContain(
      `usage: [STORE] embedded PGlite in ${dataDir} is in use by process ${ingest.proc.pid}: PGlite lets one process at a time open its directory (stop that one first, e.g. billing-sdk ingest;`,
    );

    ingest.proc.kill("SIGTERM");
    expect(await ingest.exited).toBe(0);
    expect(ingest.lines.at(-1)).toBe("ingest: stopped");
    expect(existsSync(join(dataDir, PGLITE_LOCK_FILE))).toBe(false); // released at close

    const shown = await runCli(["usage", "--pglite", dataDir, "--since", "all"]);
    expect(shown.stderr).toBe("");
    expect(shown.code).toBe(0);
    const [alpha, beta] = [hashApiKey("key-alpha"), hashApiKey("key-beta")];
    const unknown = [
      [alpha, "6", "3"],
      [beta, "30", "2"],
    ].sort((a, b) => (a[0] as string).localeCompare(b[0] as string));
    const lines = shown.stdout.trimEnd().split("\n");
    expect(lines).toHaveLength(5);
    expect(lines[0]).toMatch(/^app +module +model +usage +records$/);
    for (const [i, [hash, usage, records]] of unknown.entries()) {
      expect(lines[1 + i]).toMatch(
        new RegExp(`^\\(unknown: ${hash?.slice(0, 12)}\\) +llm +m1 +${usage} +${records}$`),
      );
    }
    expect(lines[3]).toMatch(/^app-known +tts +t1 +12 +2$/);
    expect(lines[4]).toBe(`(3 rows in all, embedded PGlite in ${dataDir}, schema billing)`);
  }, 120_000);

  it("a lock left by an ingest that was killed (SIGKILL) does not keep usage out", async () => {
    const ingest = await startIngest(
      [...brokerFlag(), "--pglite", dataDir, "--progress", "0", "--client-id", "pglite-ingest"],
      children,
    );
    expect(existsSync(join(dataDir, PGLITE_LOCK_FILE))).toBe(true);
    ingest.proc.kill("SIGKILL");
    await ingest.exited;
    const shown = await runCli(["usage", "--pglite", dataDir, "--since", "all"]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain("(3 rows in all");
  }, 120_000);

  it("in one process: a second store on an open directory is refused; a past run's lock is stale", async () => {
    const where = join(dir, "inproc");
    mkdirSync(where);
    // Left by an earlier process that had this very pid (a container restarted, say): stale.
    writeFileSync(join(where, PGLITE_LOCK_FILE), JSON.stringify({ pid: process.pid, token: "t" }));
    const first = await createPostgresUsageStore({ dataDir: where });
    try {
      await expect(createPostgresUsageStore({ dataDir: where })).rejects.toMatchObject({
        code: "STORE",
        message: expect.stringContaining(`embedded PGlite in ${where} is in use by this process`),
      });
      await first.query("SELECT 1");
    } finally {
      await first.close();
    }
    const again = await createPostgresUsageStore({ dataDir: `file://${where}`, migrate: false });
    await again.close();
    expect(existsSync(join(where, PGLITE_LOCK_FILE))).toBe(false);
  }, 60_000);

  it("refuses --pglite with --postgres, and says what to install when PGlite is missing", async () => {
    for (const command of ["ingest", "usage"]) {
      const both = captureIo();
      expect(
        await main(
          [command, "--pglite", dataDir, "--postgres", "postgres://u@127.0.0.1/db"],
          both.io,
        ),
      ).toBe(2);
      expect(both.err[0]).toBe(
        `${command}: [INVALID_ARGUMENT] --pglite: and --postgres name two stores: give one (--pglite DIR embedded, --postgres URL a server)`,
      );
    }
    const bare = captureIo();
    expect(await main(["usage"], bare.io)).toBe(2);
    expect(bare.err[0]).toMatch(/--postgres: is required .* or --pglite DIR/);

    // A reader makes no database where there is none (a mistyped directory).
    const typo = captureIo();
    expect(await main(["usage", "--pglite", join(dir, "typo")], typo.io)).toBe(1);
    expect(typo.err[0]).toBe(
      `usage: [STORE] no database in ${join(dir, "typo")} (billing-sdk ingest --pglite ${join(dir, "typo")} makes one)`,
    );
    expect(existsSync(join(dir, "typo"))).toBe(false);

    // Without the optional package: what to install, and nothing made before the check.
    const never = join(dir, "never");
    const missing = await runCli(
      ["ingest", "--pglite", never, "--broker", "mqtt://127.0.0.1:1"],
      ["--require", join(__dirname, "../../helpers/without-pglite.cjs")],
    );
    expect(missing.code).toBe(1);
    expect(missing.stderr.trim()).toBe(
      "ingest: [STORE] billing-sdk/postgres needs @electric-sql/pglite: npm install @electric-sql/pglite@0.5",
    );
    expect(existsSync(never)).toBe(false);
  }, 60_000);
});
