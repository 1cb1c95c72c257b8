import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CliIo } from "../../../src/cli/cli-io.js";
import { main } from "../../../src/cli/main.js";
import { BillingClient, hashApiKey } from "../../../src/index.js";
import { makePki, type TestPki } from "../../helpers/certs.js";
import { tlsClientOptions } from "../../helpers/fixtures.js";
import { kill, produce, startIngest, Tally } from "../../helpers/ingest-run.js";
import { Mosquitto } from "../../helpers/mosquitto.js";
import { PostgresServer } from "../../helpers/postgres.js";
import { mosquittoAvailable, postgresAvailable } from "../../helpers/require-broker.js";
import { sleep, waitUntil } from "../../helpers/time.js";

// Exactly once from a producer into PostgreSQL through real processes and real faults: a
// mosquitto broker (TLS, passwords, persistence), a PostgreSQL server (TLS, SCRAM password),
// `billing-sdk ingest` processes killed with SIGKILL. The producer is a BillingClient in this
// process (its queue keeps records across the broker restart); the checks are on the database.
const N = 50_000;
const users = { svc: "svc-pass", backend: "backend-pass" };

describe.runIf(mosquittoAvailable() && postgresAvailable())(
  "ingest into PostgreSQL under faults",
  () => {
    let pki: TestPki;
    let broker: Mosquitto;
    let db: PostgresServer;
    let tally: Tally;
    let dir: string;
    const children: ChildProcess[] = [];
    const clients: BillingClient[] = [];

    beforeAll(async () => {
      pki = makePki();
      dir = mkdtempSync(join(tmpdir(), "billing-ingest-"));
      writeFileSync(join(dir, "ca.pem"), pki.ca);
      [broker, db] = await Promise.all([
        Mosquitto.start({
          pki,
          users,
          persistent: true,
          extra: ["max_inflight_messages 1000"],
        }),
        PostgresServer.start({ pki }),
      ]);
      tally = new Tally(db.url);
    });
    afterAll(async () => {
      for (const c of children) c.kill("SIGKILL");
      for (const c of clients) await c.close(1000).catch(() => {});
      await tally?.end();
      await broker?.close();
      await db?.close();
      rmSync(dir, { recursive: true, force: true });
    });

    const ingestArgs = (schema: string, clientId: string, extra: string[] = []) => [
      "--postgres",
      db.url,
      "--schema",
      schema,
      "--broker",
      `mqtts://127.0.0.1:${broker.tlsPort}`,
      "--ca",
      join(dir, "ca.pem"),
      "--username",
      "backend",
      "--password",
      users.backend,
      "--client-id",
      clientId,
      "--progress",
      "1",
      ...extra,
    ];
    const producer = () => {
      const c = new BillingClient(
        tlsClientOptions(broker.tlsPort, pki.ca, "svc", users.svc, { maxQueued: N }),
      );
      clients.push(c);
      return c;
    };

    async function checkTotals(schema: string, sent: { ids: string[]; total: bigint }) {
      const t = await tally.totals(schema);
      expect(t.rows).toEqual({ n: N, ids: N, usage: sent.total.toString() });
      expect(t.rollups).toEqual({ n: N, usage: sent.total.toString() });
      expect(t.rejected).toEqual({ n: 0 });
      expect(t.ids).toEqual(new Set(sent.ids));
    }

    it("50,000 records: ingest SIGKILLed twice, the broker and PostgreSQL restarted; every record once", async () => {
      const schema = "faults";
      let ingest = await startIngest(ingestArgs(schema, "ingest-faults"), children);
      const client = producer();
      await client.connect();
      const sent = produce(client, N);
      const faults: string[] = [];
      const at = async (rows: number, what: string, fault: () => Promise<void>) => {
        await tally.reach(schema, rows);
        faults.push(`${what} at ${await tally.rows(schema)} rows`);
        await fault();
      };
      await at(6_000, "ingest SIGKILLed", async () => {
        await kill(ingest);
        ingest = await startIngest(ingestArgs(schema, "ingest-faults"), children);
      });
      await at(16_000, "broker restarted", async () => {
        await broker.stop("SIGTERM");
        await sleep(500);
        await broker.start();
      });
      await at(26_000, "ingest SIGKILLed", async () => {
        await kill(ingest);
        ingest = await startIngest(ingestArgs(schema, "ingest-faults"), children);
      });
      await at(36_000, "PostgreSQL crashed and restarted", async () => {
        await db.stop("immediate");
        await sleep(500);
        await db.start();
      });
      await sent.done;
      await tally.reach(schema, N);
      // Every fault hit a stream still under way.
      expect(faults.every((f) => Number(/at (\d+) rows/.exec(f)?.[1]) < N)).toBe(true);
      // The consumer saw its writes fail while PostgreSQL was down, and tried again.
      expect(ingest.lines.join("\n")).toMatch(/store write of \d+ message\(s\) failed/);
      ingest.proc.kill("SIGTERM");
      expect(await ingest.exited).toBe(0);
      expect(ingest.lines.at(-1)).toBe("ingest: stopped");
      await checkTotals(schema, sent);
    }, 180_000);

    it("two ingest processes in one group share the load; one SIGKILLed and back later; every record once", async () => {
      const schema = "pair";
      const args = (id: string) => ingestArgs(schema, id, ["--group", "pair"]);
      const a = await startIngest(args("pair-a"), children);
      let b = await startIngest(args("pair-b"), children);
      const client = producer();
      await client.connect();
      const sent = produce(client, N);
      await tally.reach(schema, 15_000);
      const storedByB = b.stored();
      await kill(b);
      const atKill = await tally.rows(schema);
      await sent.done;
      // The survivor goes on with its share...
      await tally.reach(schema, atKill + 10_000);
      // ...and what the broker gave the dead member waits in its session until it is back.
      await sleep(1500);
      expect(await tally.rows(schema)).toBeLessThan(N);
      b = await startIngest(args("pair-b"), children);
      await tally.reach(schema, N);
      await sleep(1500); // the last progress lines
      expect(storedByB).toBeGreaterThan(0);
      expect(a.stored()).toBeGreaterThan(10_000);
      for (const p of [a, b]) {
        p.proc.kill("SIGTERM");
        expect(await p.exited).toBe(0);
      }
      await checkTotals(schema, sent);
    }, 180_000);

    it("ingest and usage in-process: progress lines, a stop that finishes and acknowledges, the table", async () => {
      const lines: string[] = [];
      let stop: (() => void) | undefined;
      const io: CliIo = {
        out: (l) => lines.push(l),
        err: (l) => lines.push(l),
        onInterrupt: (s) => {
          stop = s;
        },
      };
      // A wrong MQTT password: exit 1, named, and the database connection is closed again.
      const refused = ingestArgs("inproc", "inproc").map((a) => (a === users.backend ? "nope" : a));
      expect(await main(["ingest", ...refused], io)).toBe(1);
      expect(lines.join("\n")).toMatch(/ingest: \[NOT_AUTHORIZED\]/);
      lines.length = 0;
      const running = main(
        ["ingest", ...ingestArgs("inproc", "inproc", ["--progress", "0.2"])],
        io,
      );
      await waitUntil(() => stop !== undefined, 20_000, "ingest to wait for a signal");
      const client = producer();
      const sent = produce(client, 2000, 500, 0);
      await sent.done;
      await tally.reach("inproc", 2000);
      await waitUntil(
        () => lines.some((l) => /ingest: [\d,]+ records\/s, lag [\d.]+ s, rejected 0/.test(l)),
        5000,
        "a progress line",
      );
      stop?.();
      expect(await running).toBe(0);
      expect(lines.at(-2)).toMatch(
        /totals: stored 2,000, duplicates 0, id conflicts 0, rejected 0, rejected rows stored 0, pending 0/,
      );
      expect(lines.at(-1)).toBe("ingest: stopped");
      lines.length = 0;
      expect(
        await main(["usage", "--postgres", db.url, "--schema", "inproc", "--since", "1h"], io),
      ).toBe(0);
      expect(lines[0]).toMatch(/^app +module +model +usage +records$/);
      expect(lines[1]).toMatch(
        new RegExp(
          `^\\(unknown: ${hashApiKey("fault-key").slice(0, 12)}\\) +llm +m +${sent.total.toLocaleString("en-US")} +2,000$`,
        ),
      );
      expect(lines[2]).toMatch(/^\(1 row since .* schema inproc\)$/);
      // A reader runs no migration: a mistyped schema is said, not created.
      lines.length = 0;
      expect(await main(["usage", "--postgres", db.url, "--schema", "inprok"], io)).toBe(1);
      expect(lines.join("\n")).toMatch(/schema inprok holds no billing tables/);
      expect(await tally.schemaExists("inprok")).toBe(false);
    });

    it("three processes opening a fresh schema at once migrate it once (an advisory lock)", async () => {
      const { createPostgresUsageStore } = await import("../../../src/postgres/index.js");
      const stores = await Promise.all(
        [1, 2, 3].map(() =>
          createPostgresUsageStore({ connectionString: db.url, schema: "racing" }),
        ),
      );
      for (const st of stores) await st.close();
      const check = await createPostgresUsageStore({ connectionString: db.url, schema: "racing" });
      try {
        const rows = await check.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM racing.schema_migrations",
        );
        expect(rows[0]?.n).toBe(1);
      } finally {
        await check.close();
      }
    });

    it("SIGTERM while a write waits behind a lock: stops within the write timeout; nothing lost", async () => {
      const first = await startIngest(
        ingestArgs("blocked", "ing-blocked", ["--write-timeout", "2"]),
        children,
      );
      // Another session locks the table: every write of ingest waits.
      const blocker = await tally.lock("blocked.usage_records");
      const client = producer();
      await client.reportUsage({ apiKey: "k", module: "llm", model: "m", usage: 5 });
      await client.flush(10_000);
      await waitUntil(
        () => first.lines.some((l) => /store write of 1 message\(s\) failed \(attempt 1\)/.test(l)),
        20_000,
        "a write that timed out behind the lock",
      );
      const t0 = Date.now();
      first.proc.kill("SIGTERM");
      expect(await first.exited).toBe(0);
      expect(Date.now() - t0).toBeLessThan(20_000); // close timeout (10 s) + write timeout (2 s)
      expect(first.lines.at(-1)).toBe("ingest: stopped");
      await blocker.release();
      // Unacknowledged: the next process of the same session stores it, once.
      const second = await startIngest(ingestArgs("blocked", "ing-blocked"), children);
      await tally.reach("blocked", 1);
      await sleep(500);
      expect(await tally.rows("blocked")).toBe(1);
      second.proc.kill("SIGTERM");
      expect(await second.exited).toBe(0);
    });
  },
);
