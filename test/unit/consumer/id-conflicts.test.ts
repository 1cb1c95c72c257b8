import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { UsageRecord } from "../../../gen/billing/v1/usage_pb.js";
import type { RejectedRecord } from "../../../src/consumer/index.js";
import { createPostgresUsageStore, type PostgresUsageStore } from "../../../src/postgres/index.js";
import { usageRecord, useConsumerBroker } from "../../helpers/consumer-fixture.js";
import { batchPayload } from "../../helpers/fixtures.js";
import { waitUntil } from "../../helpers/time.js";

// A record whose id comes again with different content is not a duplicate to drop in silence:
// the consumer's dedupe window skips only the bytes it handled under that id, and the store
// compares the content. And the rejection counters say what the table holds.
const suite = useConsumerBroker();
let store: PostgresUsageStore;
beforeAll(async () => {
  store = await createPostgresUsageStore();
}, 120_000);
afterAll(async () => store?.close());

const rows = async (ids: string[]) =>
  (
    await store.query<{ n: number; usage: string | null }>(
      "SELECT count(*)::int AS n, sum(usage)::text AS usage FROM billing.usage_records WHERE id = ANY($1::uuid[])",
      [ids],
    )
  )[0];
const rejections = (id: string) =>
  store.query<{ reason: string }>(
    "SELECT reason FROM billing.rejected_records WHERE record_id = $1",
    [id],
  );

describe("a repeated id with different content, through the consumer", () => {
  it("into the store: a later message with the same id and another usage is a conflict (kept as rejected, not billed), not a duplicate", async () => {
    const prefix = suite.nextPrefix();
    const c = suite.consumer({ store }, prefix);
    await c.ready;
    const first = usageRecord({ usage: 7n });
    await suite.publish(prefix, batchPayload(first));
    await waitUntil(() => c.stats().handled === 1, 5000, "the first stored");
    const other: UsageRecord = { ...first, usage: 700n };
    await suite.publish(prefix, batchPayload(other)); // the same id, other content
    await suite.publish(prefix, batchPayload(first)); // a resend: a duplicate
    await waitUntil(() => c.stats().pending === 0 && c.stats().received === 3, 5000, "all handled");
    expect(c.stats()).toMatchObject({ handled: 1, duplicates: 1, idConflicts: 1 });
    expect(await rows([first.id])).toEqual({ n: 1, usage: "7" });
    expect(await rejections(first.id)).toEqual([
      { reason: `id ${first.id} was stored before with a different usage: not billed again` },
    ]);
  });

  it("into the store: the same id twice in one message with other content, the first stored", async () => {
    const prefix = suite.nextPrefix();
    const c = suite.consumer({ store }, prefix);
    await c.ready;
    const a = usageRecord({ usage: 3n });
    const b: UsageRecord = { ...a, model: "other-model" };
    await suite.publish(prefix, batchPayload(a, b, a));
    await waitUntil(() => c.stats().pending === 0 && c.stats().received === 1, 5000, "handled");
    expect(c.stats()).toMatchObject({ records: 3, handled: 1, duplicates: 1, idConflicts: 1 });
    expect(await rows([a.id])).toEqual({ n: 1, usage: "3" });
    expect(await rejections(a.id)).toHaveLength(1);
  });

  it("with onRecord: the second content goes to onRejected, once handled the first", async () => {
    const prefix = suite.nextPrefix();
    const handled: UsageRecord[] = [];
    const rejected: RejectedRecord[] = [];
    const c = suite.consumer(
      { onRecord: (r) => void handled.push(r), onRejected: (r) => void rejected.push(r) },
      prefix,
    );
    await c.ready;
    const first = usageRecord({ usage: 1n });
    await suite.publish(prefix, batchPayload(first));
    await waitUntil(() => c.stats().handled === 1, 5000, "the first handled");
    await suite.publish(prefix, batchPayload({ ...first, usage: 2n }));
    await waitUntil(() => c.stats().pending === 0 && c.stats().received === 2, 5000, "handled");
    expect(handled.map((r) => r.usage)).toEqual([1n]);
    expect(rejected.map((r) => [r.recordId, r.reason])).toEqual([
      [first.id, `id ${first.id} was handled before with other content: not billed again`],
    ]);
    expect(c.stats()).toMatchObject({ handled: 1, duplicates: 0, idConflicts: 1 });
  });
});

describe("rejection counters that match the table", () => {
  it("a rejected payload delivered twice: two deliveries, one row stored", async () => {
    const prefix = suite.nextPrefix();
    const c = suite.consumer({ store }, prefix);
    await c.ready;
    const bad = usageRecord({ apiKeySha256: "not-a-fingerprint" });
    await suite.publish(prefix, batchPayload(bad));
    await suite.publish(prefix, batchPayload(bad)); // the broker delivers it again
    await waitUntil(() => c.stats().pending === 0 && c.stats().received === 2, 5000, "handled");
    expect(await rejections(bad.id)).toHaveLength(1);
    const s = c.stats();
    expect(s).toMatchObject({ rejectedDeliveries: 2, rejectedStored: 1, idConflicts: 0 });
    expect(s.rejected).toBe(s.rejectedDeliveries); // the former name still reads
  });
});
