import { randomUUID } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { expect, it } from "vitest";
import { type UsageRecord, UsageRecordSchema } from "../../gen/billing/v1/usage_pb.js";
import { hashApiKey } from "../../src/index.js";
import type { PostgresUsageStore } from "../../src/postgres/index.js";

// One id, two contents: the same cases on PGlite (test/unit/postgres-conflicts.test.ts) and on a
// real PostgreSQL server (test/integration/postgres-conflicts.test.ts). Each case uses its own
// API key, so the sums it checks are its own.

const MINUTE = Date.UTC(2026, 2, 3, 4, 5);

function record(key: string, extra: Partial<Omit<UsageRecord, "$typeName">> = {}): UsageRecord {
  return create(UsageRecordSchema, {
    id: randomUUID(),
    apiKeySha256: hashApiKey(key),
    appId: "app-1",
    module: "llm",
    model: "gpt-4",
    usage: 10n,
    occurredAt: timestampFromMs(MINUTE + 1500),
    producer: "svc-1",
    metadata: { tokens: 3 },
    ...extra,
  });
}

/** Rows, rollups and rejections of one key, as the table holds them. */
async function state(store: PostgresUsageStore, key: string, ids: string[]) {
  const k = hashApiKey(key);
  const q = async (sql: string, params: unknown[]) => (await store.query(sql, params))[0];
  return {
    rows: await q(
      `SELECT count(*)::int AS n, coalesce(sum(usage), 0)::text AS usage FROM ${store.schema}.usage_records WHERE api_key_sha256 = $1`,
      [k],
    ),
    rollups: await q(
      `SELECT coalesce(sum(records), 0)::int AS n, coalesce(sum(usage), 0)::text AS usage FROM ${store.schema}.usage_minutely WHERE api_key_sha256 = $1`,
      [k],
    ),
    rejected: await store.query<{ record_id: string; reason: string; payload: Uint8Array }>(
      `SELECT record_id, reason, payload FROM ${store.schema}.rejected_records WHERE record_id = ANY($1::text[]) ORDER BY reason`,
      [ids],
    ),
  };
}

/** The cases, run against the store `get()` returns. */
export function conflictCases(get: () => PostgresUsageStore): void {
  it("the same id with different content is a conflict: kept in rejected_records naming the id, not billed; the same content again is a duplicate", async () => {
    const store = get();
    const first = record("conflict-a", { usage: 10n });
    expect(await store.write({ records: [first], rejected: [] })).toMatchObject({ inserted: 1 });
    const other = { ...first, usage: 99n, model: "gpt-5" };
    const again = { ...first };
    expect(await store.write({ records: [other], rejected: [] })).toEqual({
      inserted: 0,
      conflicts: [0],
      rejectedStored: 1,
    });
    // A byte-identical resend is a duplicate; the conflicting record again is kept once.
    expect(await store.write({ records: [again, other], rejected: [] })).toEqual({
      inserted: 0,
      conflicts: [1],
      rejectedStored: 0,
    });
    const s = await state(store, "conflict-a", [first.id]);
    expect(s.rows).toEqual({ n: 1, usage: "10" });
    expect(s.rollups).toEqual({ n: 1, usage: "10" });
    expect(s.rejected).toHaveLength(1);
    expect(s.rejected[0]?.record_id).toBe(first.id);
    expect(s.rejected[0]?.reason).toBe(
      `id ${first.id} was stored before with a different model, usage: not billed again`,
    );
    expect([...(s.rejected[0]?.payload ?? [])]).toEqual([...toBinary(UsageRecordSchema, other)]);
    expect(s.rejected[0]?.reason).not.toContain("conflict-a"); // never the raw key
  });

  it("within one batch: the first of an id is stored, a second with other content is a conflict, a copy is a duplicate", async () => {
    const store = get();
    const a = record("conflict-b", { usage: 5n });
    const b = { ...a, usage: 6n };
    const c = record("conflict-b", { usage: 7n });
    expect(await store.write({ records: [a, c, b, a], rejected: [] })).toEqual({
      inserted: 2,
      conflicts: [2],
      rejectedStored: 1,
    });
    const s = await state(store, "conflict-b", [a.id, c.id]);
    expect(s.rows).toEqual({ n: 2, usage: "12" });
    expect(s.rollups).toEqual({ n: 2, usage: "12" });
    expect(s.rejected.map((r) => r.reason)).toEqual([
      `id ${a.id} was stored before with a different usage: not billed again`,
    ]);
  });

  it("what counts as the same content: every stored column, metadata as JSON (key order aside), time to the microsecond", async () => {
    const store = get();
    const base = record("conflict-c", { metadata: { a: 1, b: [true, null] } });
    await store.write({ records: [base], rejected: [] });
    const reordered = { ...base, metadata: { b: [true, null], a: 1 } };
    const sameMicro = { ...base, occurredAt: timestampFromMs(MINUTE + 1500) };
    sameMicro.occurredAt = { ...sameMicro.occurredAt, nanos: 500_000_400 } as never;
    expect(await store.write({ records: [reordered], rejected: [] })).toMatchObject({
      inserted: 0,
      rejectedStored: 0,
    });
    expect(await store.write({ records: [sameMicro], rejected: [] })).toMatchObject({
      inserted: 0,
      rejectedStored: 0,
    });
    const variants: Array<[string, Partial<UsageRecord>]> = [
      ["api_key_sha256", { apiKeySha256: hashApiKey("conflict-c2") }],
      ["app_id", { appId: "" }],
      ["module", { module: "tts" }],
      ["producer", { producer: "svc-2" }],
      ["occurred_at", { occurredAt: timestampFromMs(MINUTE + 1501) }],
      ["metadata", { metadata: { a: 2, b: [true, null] } }],
    ];
    for (const [column, change] of variants) {
      const result = await store.write({ records: [{ ...base, ...change }], rejected: [] });
      expect(result, column).toEqual({ inserted: 0, conflicts: [0], rejectedStored: 1 });
    }
    const s = await state(store, "conflict-c", [base.id]);
    expect(s.rows).toEqual({ n: 1, usage: "10" });
    expect(s.rollups).toEqual({ n: 1, usage: "10" });
    expect(s.rejected.map((r) => /different (\w+)/.exec(r.reason)?.[1]).sort()).toEqual(
      variants.map(([c]) => c).sort(),
    );
  });

  it("two writers of one id with different content at once: one stored, the other a conflict", async () => {
    const store = get();
    for (let round = 0; round < 10; round++) {
      const a = record("conflict-d", { usage: 1n });
      const b = { ...a, usage: 2n };
      const results = await Promise.all([
        store.write({ records: [a], rejected: [] }),
        store.write({ records: [b], rejected: [] }),
      ]);
      expect(results.map((r) => r.inserted).sort()).toEqual([0, 1]);
      expect(results.flatMap((r) => r.conflicts ?? [])).toEqual([0]);
    }
    const s = await state(store, "conflict-d", []);
    expect(s.rows?.n).toBe(10);
    expect(s.rollups).toEqual(s.rows);
  });
}
