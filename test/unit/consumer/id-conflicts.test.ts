import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { UsageRecord } from "../../../gen/billing/v1/usage_pb.js";
import { progressLine } from "../../../src/cli/ingest.js";
import type { RejectedRecord } from "../../../src/consumer/index.js";
import { createPostgresUsageStore, type PostgresUsageStore } from "../../../src/postgres/index.js";
import { captureIo } from "../../helpers/cli-io.js";
import { usageRecord, useConsumerBroker } from "../../helpers/consumer-fixture.js";
import { batchPayload } from "../../helpers/fixtures.js";
import { sleep, waitUntil } from "../../helpers/time.js";

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

describe("id conflicts are not silent", () => {
  const warnings = () => suite.logs.filter((l) => l.includes("came under an id already handled"));

  it("into the store: a warning at once, then at most one per 10 s with the count (the rest at close); the ingest progress line shows them", async () => {
    const prefix = suite.nextPrefix();
    const c = suite.consumer({ store }, prefix);
    await c.ready;
    const io = captureIo();
    const progress = progressLine(c, () => undefined, io.io);
    const first = usageRecord({ usage: 7n });
    await suite.publish(prefix, batchPayload(first));
    await suite.publish(prefix, batchPayload({ ...first, usage: 8n }));
    await waitUntil(() => c.stats().idConflicts === 1, 5000, "the first conflict");
    expect(warnings()).toEqual([
      `warn: 1 record(s) came under an id already handled with other content (e.g. id ${first.id}): not billed, kept as rejected by the store; a producer reuses ids, or someone sends forged records (stats().idConflicts counts them)`,
    ]);
    await suite.publish(prefix, batchPayload({ ...first, usage: 9n }));
    await suite.publish(prefix, batchPayload({ ...first, usage: 10n }));
    await suite.publish(prefix, batchPayload(usageRecord({ apiKeySha256: "not-a-fingerprint" })));
    await waitUntil(() => c.stats().pending === 0 && c.stats().received === 5, 5000, "handled");
    expect(warnings()).toHaveLength(1); // within 10 s of the first: counted, not said yet
    progress();
    expect(io.err).toHaveLength(1);
    expect(io.err[0]).toMatch(
      /^ingest: [\d,]+ records\/s, lag -, rejected 1, id conflicts 3 \(totals: stored 1, duplicates 0, id conflicts 3, rejected 1, rejected rows stored 4, pending 0, failed writes 0\)$/,
    );
    await c.close();
    expect(warnings()[1]).toMatch(/^warn: 2 record\(s\) came under an id already handled/);
  });

  it("with onRecord: the warning says the records went to onRejected", async () => {
    const prefix = suite.nextPrefix();
    const c = suite.consumer({ onRecord: () => {}, onRejected: () => {} }, prefix);
    await c.ready;
    const first = usageRecord({ usage: 7n });
    await suite.publish(prefix, batchPayload(first, { ...first, usage: 8n }));
    await waitUntil(() => c.stats().idConflicts === 1, 5000, "the conflict");
    expect(warnings()).toEqual([
      expect.stringContaining(`(e.g. id ${first.id}): not billed, passed to onRejected;`),
    ]);
  });
});

describe("with onRecord, records of one id handled at the same time", () => {
  it("a second content goes to onRejected and a byte-identical copy is a duplicate, while the first is still in onRecord", async () => {
    const prefix = suite.nextPrefix();
    const calls: string[] = [];
    const rejected: RejectedRecord[] = [];
    let open: () => void = () => {};
    const gate = new Promise<void>((resolve) => (open = resolve));
    const c = suite.consumer(
      {
        onRecord: async (r) => {
          calls.push(`${r.id} ${r.usage}`);
          await gate; // every record below arrives while the first of its id is in here
        },
        onRejected: (r) => void rejected.push(r),
      },
      prefix,
    );
    await c.ready;
    const a = usageRecord({ usage: 1n });
    const b = usageRecord({ usage: 1n });
    const same = usageRecord({ usage: 5n });
    await suite.publish(prefix, batchPayload(a, { ...a, usage: 1000n })); // one message
    await suite.publish(prefix, batchPayload(b));
    await suite.publish(prefix, batchPayload({ ...b, usage: 1000n })); // two messages
    await suite.publish(prefix, batchPayload(same));
    await suite.publish(prefix, batchPayload(same)); // the producer's resend, in flight
    await waitUntil(() => c.stats().received === 5, 5000, "all received");
    await sleep(100); // what is decided before the first ones end is decided by now
    open();
    await waitUntil(() => c.stats().pending === 0, 5000, "all handled");
    expect(calls.sort()).toEqual([`${a.id} 1`, `${b.id} 1`, `${same.id} 5`].sort());
    expect(rejected.map((r) => r.recordId).sort()).toEqual([a.id, b.id].sort());
    expect(rejected[0]?.reason).toMatch(/with other content: not billed again$/);
    expect(c.stats()).toMatchObject({ handled: 3, duplicates: 1, idConflicts: 2, failed: 0 });
  });

  it("an onRecord that fails lets a copy of its record waiting for it be handled at once", async () => {
    const prefix = suite.nextPrefix();
    const calls: string[] = [];
    let fail: (err: Error) => void = () => {};
    const c = suite.consumer(
      {
        onRecord: (r) => {
          calls.push(r.id);
          if (calls.length > 1) return;
          return new Promise<void>((_, reject) => (fail = reject));
        },
        closeTimeoutMs: 1000,
        // The first call is tried again only after 1.5 s or more.
        reconnectBaseMs: 3000,
        reconnectMaxMs: 3000,
      },
      prefix,
    );
    await c.ready;
    const r = usageRecord();
    await suite.publish(prefix, batchPayload(r));
    await suite.publish(prefix, batchPayload(r)); // a copy, waiting for the first
    await waitUntil(() => c.stats().received === 2, 5000, "both received");
    await sleep(100);
    expect(calls).toHaveLength(1);
    fail(new Error("database hiccup"));
    // The copy goes on now, not after the first one's retry: its message is not held back.
    await waitUntil(() => c.stats().handled === 1, 1000, "the copy handled");
    expect(calls).toEqual([r.id, r.id]);
    // The first one, tried again, finds its id handled with its bytes: a duplicate.
    await waitUntil(() => c.stats().pending === 0, 5000, "both handled");
    expect(calls).toHaveLength(2);
    expect(c.stats()).toMatchObject({ handled: 1, duplicates: 1, idConflicts: 0, failed: 1 });
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
