import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { connectAsync, type MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type UsageRecord, UsageRecordSchema } from "../../../gen/billing/v1/usage_pb.js";
import { createUsageConsumer, type UsageStore } from "../../../src/consumer/index.js";
import { hashApiKey } from "../../../src/index.js";
import { createPostgresUsageStore, type PostgresUsageStore } from "../../../src/postgres/index.js";
import { migrate } from "../../../src/postgres/migrations.js";
import { pgliteClient } from "../../../src/postgres/sql-client.js";
import { AedesBroker } from "../../helpers/aedes-broker.js";
import { batchPayload } from "../../helpers/fixtures.js";
import { freePort } from "../../helpers/mosquitto.js";
import { sleep, waitUntil } from "../../helpers/time.js";

// The PostgreSQL usage store on an embedded PGlite (the same SQL runs on a server in the
// integration suite), alone and behind a consumer on an embedded broker.
let store: PostgresUsageStore;
const MINUTE = Date.UTC(2026, 0, 2, 3, 4);

beforeAll(async () => {
  store = await createPostgresUsageStore();
}, 120_000);
afterAll(async () => store?.close());

function record(extra: Partial<Omit<UsageRecord, "$typeName">> = {}): UsageRecord {
  return create(UsageRecordSchema, {
    id: randomUUID(),
    apiKeySha256: hashApiKey("key-1"),
    appId: "app-1",
    module: "llm",
    model: "gpt-4",
    usage: 10n,
    occurredAt: timestampFromMs(MINUTE + 1500),
    producer: "svc-1",
    ...extra,
  });
}

const sums = async (schema = "billing") => {
  const [rows] = await store.query<{ n: string; usage: string }>(
    `SELECT count(*)::text AS n, coalesce(sum(usage), 0)::text AS usage FROM ${schema}.usage_records`,
  );
  const [rollups] = await store.query<{ n: string; usage: string }>(
    `SELECT coalesce(sum(records), 0)::text AS n, coalesce(sum(usage), 0)::text AS usage FROM ${schema}.usage_minutely`,
  );
  return { rows, rollups };
};

describe("createPostgresUsageStore", () => {
  it("creates the tables as specified, under the schema, at migration version 1", async () => {
    const columns = await store.query<{ table_name: string; column_name: string; type: string }>(
      `SELECT table_name, column_name, format_type(atttypid, atttypmod) AS type
       FROM information_schema.columns c
       JOIN pg_attribute a ON a.attrelid = ('billing.' || c.table_name)::regclass AND a.attname = c.column_name
       WHERE table_schema = 'billing' ORDER BY table_name, ordinal_position`,
    );
    const of = (t: string) =>
      columns.filter((c) => c.table_name === t).map((c) => `${c.column_name} ${c.type}`);
    expect(of("usage_records")).toEqual([
      "id uuid",
      "api_key_sha256 text",
      "app_id text",
      "module text",
      "model text",
      "usage numeric(20,0)",
      "occurred_at timestamp with time zone",
      "metadata jsonb",
      "producer text",
      "received_at timestamp with time zone",
    ]);
    expect(of("usage_minutely")).toEqual([
      "minute timestamp with time zone",
      "api_key_sha256 text",
      "app_id text",
      "module text",
      "model text",
      "usage numeric(20,0)",
      "records bigint",
    ]);
    expect(of("rejected_records")).toEqual([
      "payload_sha256 text",
      "payload bytea",
      "reason text",
      "record_id text",
      "producer text",
      "received_at timestamp with time zone",
    ]);
    const [pk] = await store.query<{ def: string }>(
      "SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conrelid = 'billing.usage_minutely'::regclass AND contype = 'p'",
    );
    expect(pk?.def).toBe("PRIMARY KEY (minute, api_key_sha256, module, model)");
    expect(await store.query("SELECT version, name FROM billing.schema_migrations")).toEqual([
      { version: 1, name: "usage_records, usage_minutely, rejected_records" },
    ]);
  });

  it("writes each record once and adds only new records to the rollups", async () => {
    const r1 = record({ usage: 18_446_744_073_709_551_615n, metadata: { tokens: 3, tags: ["a"] } });
    const r2 = record({ usage: 5n, appId: "" });
    const r3 = record({ model: "gpt-5", usage: 7n });
    expect(await store.write({ records: [r1, r2, r3], rejected: [] })).toEqual({
      inserted: 3,
      rejectedStored: 0,
    });
    // A resend of r1, the same id with other values (a conflict: kept as rejected, not billed),
    // and a new record twice: only the new one counts.
    const resend = { ...r1, usage: 1n };
    const r4 = record({ usage: 1n, occurredAt: timestampFromMs(MINUTE + 60_000) });
    expect(await store.write({ records: [resend, r4, r4], rejected: [] })).toEqual({
      inserted: 1,
      conflicts: [0],
      rejectedStored: 1,
    });
    const rows = await store.query<Record<string, unknown>>(
      `SELECT id::text, app_id, usage::text, to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') AS at, metadata, producer
       FROM billing.usage_records WHERE id = $1`,
      [r1.id],
    );
    expect(rows).toEqual([
      {
        id: r1.id,
        app_id: "app-1",
        usage: "18446744073709551615",
        at: "2026-01-02T03:04:01.500000",
        metadata: { tokens: 3, tags: ["a"] },
        producer: "svc-1",
      },
    ]);
    const rollups = await store.query(
      `SELECT to_char(minute AT TIME ZONE 'UTC', 'HH24:MI') AS minute, app_id, model, usage::text, records::int
       FROM billing.usage_minutely ORDER BY minute, model`,
    );
    expect(rollups).toEqual([
      // r1 and r2 share the key, module, model and minute; the app id known to one is kept.
      {
        minute: "03:04",
        app_id: "app-1",
        model: "gpt-4",
        usage: "18446744073709551620",
        records: 2,
      },
      { minute: "03:04", app_id: "app-1", model: "gpt-5", usage: "7", records: 1 },
      { minute: "03:05", app_id: "app-1", model: "gpt-4", usage: "1", records: 1 },
    ]);
    const { rows: all, rollups: summed } = await sums();
    expect(summed).toEqual(all);
  });

  it("keeps rejections with their bytes and reason, each payload once", async () => {
    const bad = {
      reason: "apiKeySha256: bad",
      payload: new Uint8Array([1, 2, 3]),
      recordId: "x\u0000y",
    };
    await store.write({ records: [], rejected: [bad, bad] });
    await store.write({ records: [], rejected: [bad] }); // redelivered
    const rows = await store.query<{ reason: string; record_id: string; payload: Uint8Array }>(
      "SELECT reason, record_id, payload FROM billing.rejected_records WHERE reason = $1",
      [bad.reason],
    );
    expect(rows).toHaveLength(1);
    expect([...(rows[0]?.payload ?? [])]).toEqual([1, 2, 3]);
    expect(rows[0]?.record_id).toBe("x\ufffdy"); // text cannot hold NUL; the bytes are kept as sent
  });

  it("a record PostgreSQL refuses is kept as rejected; the others of its batch are stored", async () => {
    const max = 18_446_744_073_709_551_615n;
    const key = hashApiKey("overflow");
    const big = Array.from({ length: 6 }, () => record({ apiKeySha256: key, usage: max }));
    const nul = record({ metadata: { text: "a\u0000b" } }); // jsonb cannot hold U+0000
    const fine = record({ usage: 3n });
    const result = await store.write({ records: [...big, nul, fine], rejected: [] });
    // numeric(20,0) holds 5 of them summed in one rollup row, not 6.
    expect(result).toEqual({ inserted: 6, rejected: 2, rejectedStored: 2 });
    const reasons = await store.query<{ record_id: string; reason: string }>(
      "SELECT record_id, reason FROM billing.rejected_records WHERE reason LIKE 'PostgreSQL refused it%' ORDER BY reason",
    );
    expect(reasons.map((r) => r.reason)).toEqual([
      "PostgreSQL refused it: numeric field overflow",
      "PostgreSQL refused it: unsupported Unicode escape sequence",
    ]);
    expect(reasons[1]?.record_id).toBe(nul.id);
    const { rows, rollups } = await sums();
    expect(rollups).toEqual(rows);
  });

  it("sums the rollups per app, module and model since a time", async () => {
    const totals = await store.usage({ since: new Date(MINUTE + 60_000) });
    expect(totals).toEqual([
      { appId: "app-1", module: "llm", model: "gpt-4", usage: 1n, records: 1 },
    ]);
    expect((await store.usage()).length).toBeGreaterThan(1);
  });

  it("migrates once (again: nothing to do), and refuses a schema a newer billing-sdk migrated", async () => {
    const db = await pgliteClient(undefined);
    try {
      await migrate(db, "other");
      await migrate(db, "other"); // again: nothing to do
      expect(await db.query("SELECT count(*)::int AS n FROM other.schema_migrations")).toEqual([
        { n: 1 },
      ]);
      await db.query("INSERT INTO other.schema_migrations (version, name) VALUES (99, 'future')");
      await expect(migrate(db, "other")).rejects.toMatchObject({
        code: "STORE",
        message: expect.stringMatching(/version 99, newer than this billing-sdk knows \(1\)/),
      });
    } finally {
      await db.close();
    }
  }, 120_000);

  it("refuses bad options, and names an unreachable server without its password", async () => {
    await expect(createPostgresUsageStore({ schema: "Billing;drop" })).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
      field: "schema",
    });
    await expect(createPostgresUsageStore({ connectionString: "mysql://x" })).rejects.toMatchObject(
      { field: "connectionString" },
    );
    await expect(createPostgresUsageStore({ maxConnections: 0 })).rejects.toMatchObject({
      field: "maxConnections",
    });
    const port = await freePort();
    const err = await createPostgresUsageStore({
      connectionString: `postgres://u:secret-pw@127.0.0.1:${port}/db`,
    }).then(
      () => new Error("opened"),
      (e: unknown) => e as Error,
    );
    expect(err).toMatchObject({ code: "UNREACHABLE" });
    expect(err.message).toContain(`postgres://u@127.0.0.1:${port}/db`);
    expect(err.message).not.toContain("secret-pw");
  });
});

describe("a consumer into the PostgreSQL store", () => {
  let broker: AedesBroker;
  let producer: MqttClient;
  beforeAll(async () => {
    broker = await AedesBroker.create();
    producer = await connectAsync({ host: "127.0.0.1", port: broker.port });
  });
  afterAll(async () => {
    await producer?.endAsync();
    await broker?.close();
  });
  const consumer = (s: UsageStore, maxBatchRecords = 2000) =>
    createUsageConsumer({
      maxBatchRecords,
      brokerHost: "127.0.0.1",
      brokerPort: broker.port,
      tls: false,
      topicPrefix: "pg",
      clientId: "pg-consumer",
      reconnectBaseMs: 20,
      reconnectMaxMs: 100,
      logger: () => {},
      store: s,
    });

  it("a failed write is made again with the same messages, which are acknowledged only after it", async () => {
    let failures = 1;
    const flaky: UsageStore = {
      write: (batch) => {
        if (failures-- > 0) return Promise.reject(new Error("connection reset"));
        return store.write(batch);
      },
    };
    const c = consumer(flaky);
    await c.ready;
    const sent = Array.from({ length: 30 }, (_, i) => record({ usage: BigInt(i + 1) }));
    for (let i = 0; i < sent.length; i += 3) {
      await producer.publishAsync("pg/report", batchPayload(...sent.slice(i, i + 3)), { qos: 1 });
    }
    const bad = record({ id: "bad" });
    await producer.publishAsync("pg/report", batchPayload(bad, sent[0] as UsageRecord), { qos: 1 });
    await waitUntil(
      () => c.stats().received === 11 && c.stats().pending === 0,
      10_000,
      "all stored",
    );
    expect(c.stats()).toMatchObject({ handled: 30, duplicates: 1, rejected: 1, failed: 1 });
    const [row] = await store.query<{ n: number; usage: string }>(
      "SELECT count(*)::int AS n, sum(usage)::text AS usage FROM billing.usage_records WHERE id = ANY($1::uuid[])",
      [sent.map((r) => r.id)],
    );
    expect(row).toEqual({ n: 30, usage: String((30 * 31) / 2) });
    expect(
      await store.query("SELECT reason FROM billing.rejected_records WHERE record_id = 'bad'"),
    ).toEqual([{ reason: "id: must be a lowercase hyphenated UUID, not empty or nil" }]);
    await c.close();
    // Acknowledged: the same session gets nothing again.
    const again = consumer(store);
    await again.ready;
    await sleep(200);
    expect(again.stats().received).toBe(0);
    await again.close();
  });

  it("a message with more records than maxBatchRecords is written in parts, acknowledged after the last", async () => {
    const sizes: number[] = [];
    let failNext = 2; // the second part fails once
    const parts: UsageStore = {
      write: (batch) => {
        sizes.push(batch.records.length);
        if (--failNext === 0) return Promise.reject(new Error("second part failed"));
        return store.write(batch);
      },
    };
    const c = consumer(parts, 2);
    await c.ready;
    const sent = Array.from({ length: 5 }, () => record({ usage: 2n }));
    await producer.publishAsync("pg/report", batchPayload(...sent), { qos: 1 });
    await waitUntil(() => c.stats().received === 1 && c.stats().pending === 0, 10_000, "stored");
    expect(sizes).toEqual([2, 2, 1, 2]); // the failed part again, alone
    expect(c.stats()).toMatchObject({ handled: 5, failed: 1, duplicates: 0 });
    const [row] = await store.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM billing.usage_records WHERE id = ANY($1::uuid[])",
      [sent.map((r) => r.id)],
    );
    expect(row?.n).toBe(5);
    await c.close();
  });
});
