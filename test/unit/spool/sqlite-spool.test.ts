import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  BillingClient,
  type BillingClientOptions,
  getBillingClient,
  type RecordSpool,
} from "../../../src/index.js";
import { SqliteSpool, spoolContractCases } from "../../../src/spool/index.js";
import { AedesBroker } from "../../helpers/aedes-broker.js";
import { decodeRecords } from "../../helpers/fixtures.js";
import { MemorySpool } from "../../helpers/memory-spool.js";
import { freePort } from "../../helpers/mosquitto.js";
import { waitUntil } from "../../helpers/time.js";

const dir = mkdtempSync(join(tmpdir(), "billing-spool-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// The contract suite ships with the package (billing-sdk/spool) for third-party spools.
describe("RecordSpool contract: SqliteSpool", () => {
  for (const c of spoolContractCases(
    (name) => new SqliteSpool({ path: join(dir, `contract-${name}.db`) }),
  )) {
    it(c.name, c.run);
  }
});
describe("RecordSpool contract: MemorySpool (reference)", () => {
  for (const c of spoolContractCases((name) => new MemorySpool(name))) it(c.name, c.run);
});
describe("the contract suite can fail", () => {
  it("catches a spool that loses records on reopen and one that loads out of order", () => {
    const forgetful = (name: string): RecordSpool => {
      const s = new MemorySpool(`forgetful-${name}-${Math.random()}`);
      return s;
    };
    const unordered = (name: string): RecordSpool => {
      const s = new MemorySpool(`unordered-${name}`);
      return { ...bind(s), load: () => s.load().reverse() };
    };
    const failures = (make: (name: string) => RecordSpool) =>
      spoolContractCases(make).filter((c) => {
        try {
          c.run();
          return false;
        } catch {
          return true;
        }
      }).length;
    expect(failures(forgetful)).toBeGreaterThan(0);
    expect(failures(unordered)).toBeGreaterThan(0);
    expect(failures((name) => new MemorySpool(`good-${name}`))).toBe(0);
  });
});

function bind(s: RecordSpool): RecordSpool {
  return {
    load: () => s.load(),
    append: (r) => s.append(r),
    remove: (q) => s.remove(q),
    count: () => s.count(),
    close: () => s.close(),
  };
}

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
  const options = (
    spool: RecordSpool | string,
    extra: BillingClientOptions = {},
  ): BillingClientOptions => ({
    brokerHost: "127.0.0.1",
    brokerPort: broker.port,
    tls: false,
    heartbeatIntervalMs: 0,
    reconnectBaseMs: 50,
    logger: quiet,
    spool: typeof spool === "string" ? new SqliteSpool({ path: spool }) : spool,
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
    await waitUntil(
      () => decodeRecords(broker.payloads("billing/report")).length === 500,
      5000,
      "records",
    );
    await c.close();
    expect(statSync(path).size).toBeLessThan(64 * 1024); // compacted when empty
  });

  it("a spool that cannot be read fails the constructor with SPOOL, closes it and registers nothing", () => {
    expect(() => new SqliteSpool({ path: dir })).toThrow(
      expect.objectContaining({ code: "SPOOL" }),
    );
    let closed = false;
    const unreadable: RecordSpool = {
      ...bind(new MemorySpool("unreadable")),
      load: () => {
        throw new Error("disk on fire");
      },
      close: () => {
        closed = true;
      },
    };
    expect(() => new BillingClient(options(unreadable))).toThrow(
      expect.objectContaining({ code: "SPOOL" }),
    );
    expect(closed).toBe(true);
    expect(getBillingClient()).toBeUndefined();
    // The old `spool: { path }` form is not a RecordSpool: refused, with what to do instead.
    expect(
      () => new BillingClient({ ...options(unreadable), spool: { path: "x" } as never }),
    ).toThrow(
      expect.objectContaining({
        code: "INVALID_ARGUMENT",
        field: "spool",
        message: expect.stringContaining("new SqliteSpool({ path })"),
      }),
    );
  });

  it("a full spool rejects the failing calls with SPOOL, counted; the rest goes on", async () => {
    const path = join(dir, "client-full.db");
    const c = new BillingClient(
      options(new SqliteSpool({ path, maxBytes: 48 * 1024 }), { brokerPort: await freePort() }),
    );
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

  it("the same spool instance is the same client, another is a different client; a custom RecordSpool works too", async () => {
    const path = join(dir, "same.db");
    const spool = new SqliteSpool({ path });
    const a = new BillingClient(options(spool));
    expect(new BillingClient(options(spool))).toBe(a);
    expect(() => new BillingClient(options(new MemorySpool("other")))).toThrow(
      expect.objectContaining({ code: "ALREADY_INITIALIZED" }),
    );
    await a.close();
    const custom = new MemorySpool("client");
    const c = new BillingClient(options(custom));
    await c.connect();
    await report(c, 5);
    await c.flush(5000);
    await waitUntil(() => custom.count() === 0, 5000, "deleted after PUBACK");
  });
});
