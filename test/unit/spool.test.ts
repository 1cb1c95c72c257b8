import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  BillingClient,
  type BillingClientOptions,
  getBillingClient,
  SqliteSpool,
} from "../../src/index.js";
import { AedesBroker, until } from "../helpers/aedes-broker.js";
import { decodeRecords } from "../helpers/fixtures.js";
import { freePort } from "../helpers/mosquitto.js";
import { MemorySpool, spoolContract } from "../helpers/spool-contract.js";

const dir = mkdtempSync(join(tmpdir(), "billing-spool-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("RecordSpool contract: SqliteSpool", () => {
  spoolContract((name) => new SqliteSpool({ path: join(dir, `contract-${name}.db`) }));
});
describe("RecordSpool contract: MemorySpool (reference)", () => {
  spoolContract((name) => new MemorySpool(name));
});

describe("SqliteSpool refuses what it cannot use, with SPOOL", () => {
  const openErr = (path: string) => {
    try {
      new SqliteSpool({ path }).close();
    } catch (e) {
      return e as { code: string; message: string };
    }
    return undefined;
  };

  it("a second holder of the same file", () => {
    const path = join(dir, "locked.db");
    const first = new SqliteSpool({ path });
    expect(openErr(path)).toMatchObject({
      code: "SPOOL",
      message: expect.stringContaining("in use"),
    });
    first.close();
    expect(openErr(path)).toBeUndefined();
  });

  it("a corrupt file, a directory, a missing folder", () => {
    const corrupt = join(dir, "corrupt.db");
    writeFileSync(corrupt, Buffer.alloc(8192, 0x5a));
    expect(openErr(corrupt)).toMatchObject({
      code: "SPOOL",
      message: expect.stringContaining("corrupt"),
    });
    const folder = join(dir, "a-directory");
    mkdirSync(folder);
    expect(openErr(folder)).toMatchObject({ code: "SPOOL" });
    expect(openErr(join(dir, "no", "such", "folder", "x.db"))).toMatchObject({ code: "SPOOL" });
  });

  it("a full disk (maxBytes) fails the write, all or nothing, and recovers when space frees", () => {
    const s = new SqliteSpool({ path: join(dir, "full.db"), maxBytes: 64 * 1024 });
    const big = (seq: number) => ({ seq, id: `i${seq}`, bytes: new Uint8Array(4000) });
    let stored = 0;
    let error: unknown;
    for (let i = 0; i < 100 && error === undefined; i++) {
      try {
        s.append([big(i)]);
        stored++;
      } catch (e) {
        error = e;
      }
    }
    expect(error).toMatchObject({ code: "SPOOL", message: expect.stringContaining("full") });
    expect(s.count()).toBe(stored);
    expect(() => s.append([big(1000), big(1001)])).toThrow();
    expect(s.count()).toBe(stored); // the failed batch left nothing behind
    s.remove(Array.from({ length: stored }, (_, i) => i));
    s.append([big(2000)]);
    expect(s.count()).toBe(1);
    s.close();
  });
});

describe("BillingClient with a spool", () => {
  let broker: AedesBroker;
  beforeAll(async () => {
    broker = await AedesBroker.create();
  });
  afterAll(async () => broker.close());
  afterEach(async () => {
    await getBillingClient()
      ?.close(100)
      .catch(() => {});
    broker.published.length = 0;
  });
  const quiet = () => {};
  const options = (path: string, extra: BillingClientOptions = {}): BillingClientOptions => ({
    brokerHost: "127.0.0.1",
    brokerPort: broker.port,
    tls: false,
    heartbeatIntervalMs: 0,
    reconnectBaseMs: 50,
    logger: quiet,
    spool: { path },
    ...extra,
  });
  const report = (c: BillingClient, usage: number) =>
    c.reportUsage({ apiKey: "k", module: "llm", model: "m", usage });

  it("keeps unacknowledged records across close and sends them first, same id and time, at the next start", async () => {
    const path = join(dir, "restart.db");
    const down = new BillingClient(options(path, { brokerPort: await freePort() }));
    const ids = [];
    for (let i = 0; i < 20; i++) ids.push(await report(down, i));
    await down.close(50); // resolves: nothing is lost, the records are in the spool
    const restartedAt = Date.now();
    const up = new BillingClient(options(path));
    expect(up.stats().queued).toBe(20);
    const later = await report(up, 99);
    await up.flush(5000);
    const got = decodeRecords(broker.payloads("billing/report"));
    expect(got.map((r) => r.id)).toEqual([...ids, later]);
    for (const r of got.slice(0, 20)) {
      expect(Number(r.occurredAt?.seconds) * 1000).toBeLessThanOrEqual(restartedAt); // event time kept
    }
    await up.close();
    const again = new SqliteSpool({ path });
    expect(again.count()).toBe(0); // acknowledged records were deleted
    again.close();
  });

  it("group-commits concurrent calls and deletes on PUBACK", async () => {
    const path = join(dir, "group.db");
    const c = new BillingClient(options(path));
    await c.connect();
    const ids = await Promise.all(Array.from({ length: 500 }, (_, i) => report(c, i)));
    expect(new Set(ids).size).toBe(500);
    await c.flush(5000);
    await until(() => broker.payloads("billing/report").length === 500, 5000, "records");
    await c.close();
    expect(statSync(path).size).toBeLessThan(64 * 1024); // compacted when empty
  });

  it("a spool that cannot be opened fails the constructor with SPOOL and registers nothing", () => {
    expect(() => new BillingClient(options(dir))).toThrow(
      expect.objectContaining({ code: "SPOOL" }),
    );
    expect(getBillingClient()).toBeUndefined();
    expect(() => new BillingClient({ ...options(dir), spool: { path: "" } })).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT", field: "spool" }),
    );
  });

  it("a full spool rejects the failing calls with SPOOL, counted; the rest goes on", async () => {
    const path = join(dir, "client-full.db");
    const c = new BillingClient({
      ...options(path, { brokerPort: await freePort() }),
      spool: { path, maxBytes: 48 * 1024 },
    });
    const blob = { blob: "x".repeat(3000) };
    let accepted = 0;
    let refused: unknown;
    for (let i = 0; i < 100 && refused === undefined; i++) {
      await c.reportUsage({ apiKey: "k", module: "m", model: "m", usage: i, metadata: blob }).then(
        () => accepted++,
        (e) => (refused = e),
      );
    }
    expect(refused).toMatchObject({ code: "SPOOL" });
    expect(c.stats()).toMatchObject({ queued: accepted, rejected: 1 });
    // Small records still fit in what is left.
    await report(c, 1);
    expect(c.stats().queued).toBe(accepted + 1);
  });

  it("equal spool options are the same client; a custom RecordSpool works too", async () => {
    const path = join(dir, "same.db");
    const a = new BillingClient(options(path));
    expect(new BillingClient(options(path))).toBe(a);
    await a.close();
    const custom = new MemorySpool("client");
    const c = new BillingClient({ ...options(path), spool: custom });
    await c.connect();
    await report(c, 5);
    await c.flush(5000);
    await until(() => custom.count() === 0, 5000, "deleted after PUBACK");
  });
});
