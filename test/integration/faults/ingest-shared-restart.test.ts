import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BillingClient } from "../../../src/index.js";
import { makePki, type TestPki } from "../../helpers/certs.js";
import { tlsClientOptions } from "../../helpers/fixtures.js";
import { produce, startIngest, Tally } from "../../helpers/ingest-run.js";
import { Mosquitto } from "../../helpers/mosquitto.js";
import { PostgresServer } from "../../helpers/postgres.js";
import { mosquittoAvailable, postgresAvailable } from "../../helpers/require-broker.js";

// Two `billing-sdk ingest` processes share the report topic ($share/<group>/…) and mosquitto is
// restarted mid-run. mosquitto 2.0 forgets shared subscriptions on a restart (persistence on or
// off): until each ingest has subscribed again at its CONNACK, the broker answers the producer's
// publishes with PUBACK 0x10 and drops them. Those records must stay queued and go again.
const N = 40_000;
const users = { svc: "svc-pass", backend: "backend-pass" };

describe.runIf(mosquittoAvailable() && postgresAvailable())(
  "a shared group through a broker restart",
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
      dir = mkdtempSync(join(tmpdir(), "billing-shared-"));
      writeFileSync(join(dir, "ca.pem"), pki.ca);
      [broker, db] = await Promise.all([
        Mosquitto.start({ pki, users, persistent: true, extra: ["max_inflight_messages 1000"] }),
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

    const ingestArgs = (clientId: string) => [
      "--postgres",
      db.url,
      "--schema",
      "shared",
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
      "--group",
      "shared",
      "--progress",
      "1",
    ];

    it("40,000 records, two ingest processes in one group, mosquitto restarted mid-run: every record once", async () => {
      const a = await startIngest(ingestArgs("shared-a"), children);
      const b = await startIngest(ingestArgs("shared-b"), children);
      const client = new BillingClient(
        tlsClientOptions(broker.tlsPort, pki.ca, "svc", users.svc, { maxQueued: N }),
      );
      clients.push(client);
      await client.connect();
      const sent = produce(client, N);
      await tally.reach("shared", 9_500);
      const atRestart = await tally.rows("shared");
      await broker.stop("SIGTERM");
      await new Promise((r) => setTimeout(r, 500));
      await broker.start();
      await sent.done;
      await tally.reach("shared", N, 90_000);
      await new Promise((r) => setTimeout(r, 1500)); // anything stored twice would show by now
      expect(atRestart).toBeLessThan(N / 2); // the restart hit a stream under way
      const s = client.stats();
      // Whether the producer met the gap depends on who reconnects first: printed, not asserted.
      console.log(`restart at ${atRestart} rows; records answered 0x10: ${s.heldNoSubscriber}`);
      expect(s.published).toBe(N);
      const t = await tally.totals("shared");
      expect(t.rows).toEqual({ n: N, ids: N, usage: sent.total.toString() });
      expect(t.rollups).toEqual({ n: N, usage: sent.total.toString() });
      expect(t.rejected).toEqual({ n: 0 });
      expect(t.ids).toEqual(new Set(sent.ids));
      expect(a.stored()).toBeGreaterThan(0);
      expect(b.stored()).toBeGreaterThan(0);
      for (const p of [a, b]) {
        p.proc.kill("SIGTERM");
        expect(await p.exited).toBe(0);
      }
    }, 180_000);
  },
);
