import { describe, expect, it } from "vitest";
import type { UsageStore } from "../../../src/consumer/index.js";
import { usageRecord, useConsumerBroker } from "../../helpers/consumer-fixture.js";
import { batchPayload } from "../../helpers/fixtures.js";
import { sleep, waitUntil } from "../../helpers/time.js";

// Faults found by the adversarial review of issue 12: a write (or an onRecord call) that times
// out and then succeeds late must not finish its message twice, so that a message is never
// acknowledged before every part of it was handled.
const { consumer, publish, nextPrefix } = useConsumerBroker();

describe("a late success after a timeout finishes nothing twice", () => {
  it("store path: a message in two parts, one written late, the other never: not acknowledged", async () => {
    const p = nextPrefix();
    const [r1, r2] = [usageRecord(), usageRecord()];
    let r1Writes = 0;
    const stored = new Set<string>();
    const store: UsageStore = {
      write: async ({ records }) => {
        const ids = records.map((r) => r.id);
        if (ids.includes(r2.id)) return new Promise(() => {}); // never commits
        if (ids.includes(r1.id) && ++r1Writes === 1) await sleep(800); // late, after the timeout
        for (const id of ids) stored.add(id);
        return { inserted: ids.length };
      },
    };
    const first = consumer(
      { store, maxBatchRecords: 1, handlerTimeoutMs: 300, closeTimeoutMs: 0 },
      p,
    );
    await first.ready;
    await publish(p, batchPayload(r1, r2));
    await waitUntil(() => r1Writes >= 2 && stored.has(r1.id), 5000, "r1 written twice");
    await sleep(900); // the late first write of r1 has ended too
    expect(first.stats().pending).toBe(1); // r2 is not stored: the message waits
    await first.close();
    // Not acknowledged: the next session of this consumer gets the whole message again.
    const again: string[] = [];
    const second = consumer(
      {
        store: {
          write: async ({ records }) => {
            again.push(...records.map((r) => r.id));
            return { inserted: records.length };
          },
        },
      },
      p,
    );
    await second.ready;
    await waitUntil(() => again.includes(r2.id), 5000, "r2 delivered again");
  });

  it("onRecord path: one call late, another never settles: not acknowledged, counted once", async () => {
    const p = nextPrefix();
    const [r1, r2] = [usageRecord(), usageRecord()];
    let r1Calls = 0;
    const first = consumer(
      {
        handlerTimeoutMs: 300,
        closeTimeoutMs: 0,
        onRecord: async (r) => {
          if (r.id === r2.id) return new Promise<void>(() => {});
          if (++r1Calls === 1) await sleep(800);
        },
      },
      p,
    );
    await first.ready;
    await publish(p, batchPayload(r1, r2));
    await waitUntil(() => r1Calls >= 2, 5000, "r1 called again after its timeout");
    await sleep(900);
    expect(first.stats()).toMatchObject({ handled: 1, pending: 1 });
    await first.close();
    const again: string[] = [];
    const second = consumer({ onRecord: (r) => void again.push(r.id) }, p);
    await second.ready;
    await waitUntil(() => again.includes(r2.id), 5000, "r2 delivered again");
  });
});

describe("sizes: one message can never stop the consumer", () => {
  it("a message over maxMessageBytes is rejected whole (its beginning kept) and acknowledged; the next record goes on", async () => {
    const p = nextPrefix();
    const writes: Array<{ records: number; rejected: Array<{ reason: string; bytes: number }> }> =
      [];
    const store: UsageStore = {
      write: async ({ records, rejected }) => {
        writes.push({
          records: records.length,
          rejected: rejected.map((r) => ({ reason: r.reason, bytes: r.payload.length })),
        });
        return { inserted: records.length };
      },
    };
    const c = consumer({ store, maxMessageBytes: 1000 }, p);
    await c.ready;
    await publish(p, Buffer.alloc(40_000, 0xab)); // garbage, 40 times the limit
    await publish(p, batchPayload(usageRecord()));
    await waitUntil(() => c.stats().handled === 1 && c.stats().pending === 0, 5000, "both handled");
    const rejected = writes.flatMap((w) => w.rejected);
    expect(rejected).toHaveLength(1);
    expect(rejected[0]?.reason).toMatch(/40000 bytes, more than maxMessageBytes \(1000\)/);
    expect(rejected[0]?.bytes).toBe(16_384); // only its beginning is kept
    expect(c.stats()).toMatchObject({ rejected: 1, handled: 1, pending: 0 });
  });

  it("rejections count toward maxBatchRecords: a flood of bad messages makes bounded writes", async () => {
    const p = nextPrefix();
    const sizes: number[] = [];
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const store: UsageStore = {
      write: async ({ records, rejected }) => {
        sizes.push(records.length + rejected.length);
        await gate; // the first write waits: the others pile up behind it
        return { inserted: records.length };
      },
    };
    const c = consumer({ store, maxBatchRecords: 10, concurrency: 1 }, p);
    await c.ready;
    for (let i = 0; i < 50; i++) await publish(p, Buffer.from([0xff, 0xff, i]));
    await waitUntil(() => c.stats().received === 50, 5000, "all received");
    release();
    await waitUntil(() => c.stats().pending === 0, 5000, "all handled");
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(50);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(10);
  });
});
