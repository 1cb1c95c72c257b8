import { afterAll, describe, expect, it } from "vitest";
import { instrumentConsumer } from "../../../src/otel/index.js";
import { createPostgresUsageStore } from "../../../src/postgres/index.js";
import { usageRecord, useConsumerBroker } from "../../helpers/consumer-fixture.js";
import { batchPayload } from "../../helpers/fixtures.js";
import { metricValue, testMeterProvider } from "../../helpers/metrics-reader.js";
import { waitUntil } from "../../helpers/time.js";

// instrumentConsumer against a real consumer on an embedded Aedes and a real SDK MeterProvider.
const suite = useConsumerBroker();
const otel = testMeterProvider();
afterAll(async () => otel.shutdown());

describe("instrumentConsumer", () => {
  it("handled, duplicates, rejected, failed, pending and the connection move as records arrive", async () => {
    const p = suite.nextPrefix();
    let release: (() => void) | undefined;
    let calls = 0;
    const c = suite.consumer(
      {
        onRecord: () => {
          calls++;
          if (calls === 1) throw new Error("database hiccup"); // failed once, tried again
          if (calls === 3) return new Promise<void>((r) => (release = r)); // held: pending
        },
      },
      p,
    );
    const metrics = instrumentConsumer(c, { meterProvider: otel.meterProvider });
    try {
      await c.ready;
      let m = await otel.collect();
      expect(metricValue(m, "billing.consumer.connection.up")).toBe(1);
      expect(metricValue(m, "billing.consumer.handled.records")).toBe(0);

      const r = usageRecord();
      await suite.publish(p, batchPayload(r));
      await suite.publish(p, batchPayload(r)); // the producer's resend: a duplicate
      await suite.publish(p, Buffer.from([0xff, 0xff])); // not a UsageBatch: rejected
      await waitUntil(
        () => c.stats().received === 3 && c.stats().pending === 0,
        5000,
        "3 messages",
      );
      m = await otel.collect();
      expect(metricValue(m, "billing.consumer.received.messages")).toBe(3);
      expect(metricValue(m, "billing.consumer.handled.records")).toBe(1);
      expect(metricValue(m, "billing.consumer.duplicate.records")).toBe(1);
      expect(metricValue(m, "billing.consumer.rejected.records")).toBe(1);
      expect(metricValue(m, "billing.consumer.failed.writes")).toBe(1);
      expect(metricValue(m, "billing.consumer.pending.count")).toBe(0);

      await suite.publish(p, batchPayload(usageRecord()));
      await waitUntil(() => release !== undefined, 5000, "the held record");
      m = await otel.collect();
      expect(metricValue(m, "billing.consumer.pending.count")).toBe(1);
      expect(metricValue(m, "billing.consumer.received.records")).toBe(3);
      release?.();
      await waitUntil(() => c.stats().pending === 0, 5000, "handled");
      m = await otel.collect();
      expect(metricValue(m, "billing.consumer.pending.count")).toBe(0);
      expect(metricValue(m, "billing.consumer.handled.records")).toBe(2);

      // The broker drops the connection: the consumer reconnects.
      await suite.broker.stop();
      await waitUntil(() => !c.stats().connected, 5000, "down");
      m = await otel.collect();
      expect(metricValue(m, "billing.consumer.connection.up")).toBe(0);
      await suite.broker.start();
      await waitUntil(() => c.stats().connected, 10_000, "back");
      m = await otel.collect();
      expect(metricValue(m, "billing.consumer.reconnects")).toBe(1);
      expect(metricValue(m, "billing.consumer.connection.up")).toBe(1);
    } finally {
      metrics.stop();
    }
  });

  it("id conflicts and the rows added to rejected_records are counters too", async () => {
    const store = await createPostgresUsageStore();
    const p = suite.nextPrefix();
    const c = suite.consumer({ store }, p);
    const metrics = instrumentConsumer(c, { meterProvider: otel.meterProvider });
    try {
      await c.ready;
      let m = await otel.collect();
      expect(metricValue(m, "billing.consumer.id_conflict.records")).toBe(0);
      expect(metricValue(m, "billing.consumer.rejected_stored.records")).toBe(0);
      const r = usageRecord({ usage: 7n });
      await suite.publish(p, batchPayload(r));
      await waitUntil(() => c.stats().handled === 1, 5000, "stored");
      await suite.publish(p, batchPayload({ ...r, usage: 700n })); // its id, other content
      await suite.publish(p, Buffer.from([0xff, 0xff])); // not a UsageBatch: rejected
      await suite.publish(p, Buffer.from([0xff, 0xff])); // delivered again: stored once
      await waitUntil(() => c.stats().received === 4 && c.stats().pending === 0, 5000, "all");
      m = await otel.collect();
      expect(metricValue(m, "billing.consumer.id_conflict.records")).toBe(1);
      expect(metricValue(m, "billing.consumer.rejected_stored.records")).toBe(2);
      expect(metricValue(m, "billing.consumer.rejected.records")).toBe(2);
      expect(m.get("billing.consumer.id_conflict.records")?.unit).toBe("{record}");
      expect(m.get("billing.consumer.rejected_stored.records")?.unit).toBe("{record}");
    } finally {
      metrics.stop();
      await c.close();
      await store.close();
    }
  }, 60_000);
});
