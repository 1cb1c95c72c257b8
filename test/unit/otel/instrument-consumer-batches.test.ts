import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Histogram } from "@opentelemetry/sdk-metrics";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ConsumerBatch, UsageStore } from "../../../src/consumer/index.js";
import { instrumentConsumer } from "../../../src/otel/index.js";
import { createPostgresUsageStore, type PostgresUsageStore } from "../../../src/postgres/index.js";
import { usageRecord, useConsumerBroker } from "../../helpers/consumer-fixture.js";
import { batchPayload } from "../../helpers/fixtures.js";
import { type Collected, testMeterProvider } from "../../helpers/metrics-reader.js";
import { sleep, waitUntil } from "../../helpers/time.js";

// The consumer's batch duration and lag histograms: a real consumer on an embedded Aedes, the
// real PostgreSQL store on PGlite (or onRecord), a real SDK MeterProvider.
const suite = useConsumerBroker();
const otel = testMeterProvider();
let pg: PostgresUsageStore;
beforeAll(async () => {
  pg = await createPostgresUsageStore();
}, 120_000);
afterAll(async () => {
  await pg?.close();
  await otel.shutdown();
});

/** The one (attribute-less) histogram point of `name`, or undefined. */
const histogram = (m: Collected, name: string): Histogram | undefined =>
  m.get(name)?.points[0]?.value as Histogram | undefined;

describe("instrumentConsumer: batch duration and lag", () => {
  it("a store write records its commit time and its oldest record's age, once per batch", async () => {
    const p = suite.nextPrefix();
    // The real store, each write made 150 ms slower: the histogram must see that time.
    const slow: UsageStore = {
      write: async (batch) => {
        await sleep(150);
        return pg.write(batch);
      },
    };
    const c = suite.consumer({ store: slow }, p);
    const seen: ConsumerBatch[] = [];
    const unobserve = c.observeBatches((b) => seen.push(b));
    const metrics = instrumentConsumer(c, { meterProvider: otel.meterProvider });
    try {
      await c.ready;
      let m = await otel.collect();
      expect(histogram(m, "billing.consumer.batch.duration")?.count ?? 0).toBe(0);
      expect(c.stats().lagMs).toBeUndefined();

      const now = Date.now();
      const old = usageRecord({ occurredAt: timestampFromMs(now - 40_000) });
      const newer = usageRecord({ occurredAt: timestampFromMs(now - 1_000) });
      await suite.publish(p, batchPayload(newer, old));
      await suite.publish(
        p,
        batchPayload(usageRecord({ occurredAt: timestampFromMs(now - 5_000) })),
      );
      await waitUntil(() => c.stats().handled === 3 && c.stats().pending === 0, 20_000, "3 stored");
      m = await otel.collect();
      const d = histogram(m, "billing.consumer.batch.duration");
      const lag = histogram(m, "billing.consumer.lag");
      expect(m.get("billing.consumer.batch.duration")?.unit).toBe("s");
      expect(m.get("billing.consumer.lag")?.unit).toBe("s");
      // One recording per successful write: as many as the consumer's own observer saw.
      expect(seen.length).toBeGreaterThanOrEqual(1);
      expect(seen.reduce((n, b) => n + b.records, 0)).toBe(3);
      expect(d?.count).toBe(seen.length);
      expect(lag?.count).toBe(seen.length);
      expect(d?.min).toBeGreaterThanOrEqual(0.15);
      expect(d?.sum).toBeCloseTo(
        seen.reduce((s, b) => s + b.durationMs / 1000, 0),
        6,
      );
      // The first batch holds the 40 s old record: its lag is at least 40 s (and not minutes).
      expect(lag?.max).toBeGreaterThanOrEqual(40);
      expect(lag?.max).toBeLessThan(100);
      expect(c.stats().lagMs).toBeGreaterThanOrEqual(seen.length === 1 ? 40_000 : 5_000);

      // A redelivered record already in the store: no new write, nothing recorded.
      const before = d?.count ?? 0;
      await suite.publish(p, batchPayload(old));
      await waitUntil(() => c.stats().duplicates === 1 && c.stats().pending === 0, 10_000, "dup");
      m = await otel.collect();
      expect(histogram(m, "billing.consumer.batch.duration")?.count).toBe(before);

      // After stop(), writes are no longer recorded.
      metrics.stop();
      await suite.publish(p, batchPayload(usageRecord()));
      await waitUntil(() => c.stats().handled === 4 && c.stats().pending === 0, 10_000, "4 stored");
      m = await otel.collect();
      expect(histogram(m, "billing.consumer.batch.duration")?.count ?? 0).toBe(before);
      expect(seen.length).toBe(before + 1); // the consumer's own observer still is
    } finally {
      metrics.stop();
      unobserve();
    }
  });

  it("with onRecord, each new record is one batch: its call time and its age", async () => {
    const p = suite.nextPrefix();
    let calls = 0;
    const c = suite.consumer(
      {
        onRecord: async () => {
          calls++;
          if (calls === 1) throw new Error("database hiccup"); // failed attempts are not recorded
          await sleep(60);
        },
      },
      p,
    );
    // An observer that throws: ignored, the records are still acknowledged and measured.
    const unobserve = c.observeBatches(() => {
      throw new Error("observer bug");
    });
    const metrics = instrumentConsumer(c, { meterProvider: otel.meterProvider });
    try {
      await c.ready;
      const base = histogram(await otel.collect(), "billing.consumer.lag")?.count ?? 0;
      const baseSum = histogram(await otel.collect(), "billing.consumer.lag")?.sum ?? 0;
      const r = usageRecord({ occurredAt: timestampFromMs(Date.now() - 20_000) });
      await suite.publish(p, batchPayload(r, usageRecord()));
      await waitUntil(() => c.stats().handled === 2 && c.stats().pending === 0, 10_000, "handled");
      const m = await otel.collect();
      const lag = histogram(m, "billing.consumer.lag");
      expect(lag?.count).toBe(base + 2);
      expect((lag?.sum ?? 0) - baseSum).toBeGreaterThanOrEqual(20);
      expect((lag?.sum ?? 0) - baseSum).toBeLessThan(80);
      expect(c.stats().failed).toBe(1);
      expect(c.stats().lagMs).toBeGreaterThanOrEqual(0);
    } finally {
      metrics.stop();
      unobserve();
    }
  });
});
