import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BillingClient } from "../../../src/index.js";
import { makePki, type TestPki } from "../../helpers/certs.js";
import { tlsClientOptions } from "../../helpers/fixtures.js";
import { produce, startIngest, Tally } from "../../helpers/ingest-run.js";
import { NatsCluster } from "../../helpers/nats-cluster.js";
import { PostgresServer } from "../../helpers/postgres.js";
import { natsAvailable, postgresAvailable } from "../../helpers/require-broker.js";

// The same run on a clustered broker: three nats-server nodes on loopback (routes between them,
// JetStream, the MQTT gateway over TLS with a password; MQTT 3.1.1 only). The producer and the
// ingest process both know the three nodes (fallbackBrokers / --fallback-broker) and start on
// node 1, which is SIGKILLed mid-stream: both fail over, and the ingest process's persistent
// session (kept in JetStream, replicated to the three nodes) resumes on another node.
const N = 50_000;
const user = { username: "billing", password: "nats-pass" };

describe.runIf(natsAvailable() && postgresAvailable())(
  "ingest on a three-node NATS cluster",
  () => {
    let pki: TestPki;
    let cluster: NatsCluster;
    let db: PostgresServer;
    let tally: Tally;
    let dir: string;
    const children: ChildProcess[] = [];
    let client: BillingClient | undefined;

    beforeAll(async () => {
      pki = makePki();
      dir = mkdtempSync(join(tmpdir(), "billing-ingest-nats-"));
      writeFileSync(join(dir, "ca.pem"), pki.ca);
      [cluster, db] = await Promise.all([NatsCluster.start(pki, user), PostgresServer.start()]);
      tally = new Tally(db.url);
    });
    afterAll(async () => {
      for (const c of children) c.kill("SIGKILL");
      await client?.close(1000).catch(() => {});
      await tally?.end();
      await cluster?.close();
      await db?.close();
      rmSync(dir, { recursive: true, force: true });
    });

    it("50,000 records while node 1 is killed: producer and ingest fail over; every record once", async () => {
      const [n1, n2, n3] = cluster.nodes.map((n) => n.mqttPort) as [number, number, number];
      const url = (port: number) => `mqtts://127.0.0.1:${port}`;
      // The cluster's JetStream needs a moment after start before MQTT sessions can be made:
      // the ingest process is restarted until it is in (it exits 1 when it cannot start).
      let ingest: Awaited<ReturnType<typeof startIngest>> | undefined;
      for (let i = 0; ingest === undefined; i++) {
        ingest = await startIngest(
          [
            "--postgres",
            db.url,
            "--schema",
            "nats",
            "--broker",
            url(n1),
            "--fallback-broker",
            url(n2),
            "--fallback-broker",
            url(n3),
            "--ca",
            join(dir, "ca.pem"),
            "--username",
            user.username,
            "--password",
            user.password,
            "--client-id",
            "ingest-nats",
            "--progress",
            "1",
          ],
          children,
        ).catch((err: Error) => {
          if (i >= 10) throw err;
          return undefined;
        });
      }
      client = new BillingClient(
        tlsClientOptions(n1, pki.ca, user.username, user.password, {
          fallbackBrokers: [
            { host: "127.0.0.1", port: n2 },
            { host: "127.0.0.1", port: n3 },
          ],
          maxQueued: N,
        }),
      );
      await client.connect(30_000);
      // Paced (about 20 s in all) so that the producer is still sending when node 1 dies.
      const sent = produce(client, N, 250, 100, 180_000);
      await tally.reach("nats", 10_000, 120_000);
      await cluster.kill(0);
      const atKill = await tally.rows("nats");
      await sent.done;
      await tally.reach("nats", N, 120_000);
      expect(atKill).toBeLessThan(N);
      expect(client.stats().reconnects).toBeGreaterThan(0);
      expect(ingest.lines.join("\n")).toMatch(/reconnected to 127\.0\.0\.1:(\d+)/);
      ingest.proc.kill("SIGTERM");
      expect(await ingest.exited).toBe(0);
      const t = await tally.totals("nats");
      expect(t.rows).toEqual({ n: N, ids: N, usage: sent.total.toString() });
      expect(t.rollups).toEqual({ n: N, usage: sent.total.toString() });
      expect(t.ids).toEqual(new Set(sent.ids));
    }, 300_000);
  },
);
