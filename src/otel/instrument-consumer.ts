import type { BatchObservableResult, Meter, Observable } from "@opentelemetry/api";
import type { UsageConsumer } from "../consumer/usage-consumer-api.js";
import { type MetricsHandle, type MetricsOptions, meterOf, observables } from "./meter-of.js";

/** Store commit times, 1 ms to 60 s (in seconds). */
const DURATION_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];
/** Record ages, 10 ms to a day (in seconds): a consumer that was away catches up on hours. */
const LAG_BUCKETS = [
  0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21_600, 86_400,
];

/** The consumer's counters (`stats()`) as observable instruments on `meter`. */
function consumerObservables(meter: Meter) {
  const { counter, upDown, gauge } = observables(meter);
  return {
    messages: counter(
      "billing.consumer.received.messages",
      "{message}",
      "Messages received on <prefix>/report",
    ),
    records: counter(
      "billing.consumer.received.records",
      "{record}",
      "Billable records in them, duplicates included",
    ),
    handled: counter(
      "billing.consumer.handled.records",
      "{record}",
      "Records handled for the first time (new in the store, or onRecord resolved)",
    ),
    duplicates: counter(
      "billing.consumer.duplicate.records",
      "{record}",
      "Records skipped because their id was handled before",
    ),
    rejected: counter(
      "billing.consumer.rejected.records",
      "{record}",
      "Records (or whole messages) that cannot be billed: kept as rejected and acknowledged",
    ),
    idConflicts: counter(
      "billing.consumer.id_conflict.records",
      "{record}",
      "Records whose id was handled before with other content: never billed, kept as rejected (or passed to onRejected)",
    ),
    rejectedStored: counter(
      "billing.consumer.rejected_stored.records",
      "{record}",
      "Rows this consumer added to rejected_records (each payload once, conflicts included)",
    ),
    failed: counter(
      "billing.consumer.failed.writes",
      "{attempt}",
      "store.write / onRecord attempts that failed or timed out (each is tried again)",
    ),
    reconnects: counter(
      "billing.consumer.reconnects",
      "{connection}",
      "Connections made after the first one",
    ),
    pending: upDown(
      "billing.consumer.pending.count",
      "{message}",
      "Messages received and not yet handled (unacknowledged)",
    ),
    connected: gauge(
      "billing.consumer.connection.up",
      "1",
      "1 while the consumer's MQTT connection is up, else 0",
    ),
  };
}

/** The consumer's instruments on `meter`: its counters as observables, and two histograms. */
function consumerInstruments(meter: Meter) {
  const duration = meter.createHistogram("billing.consumer.batch.duration", {
    unit: "s",
    description: "Time a successful store.write (one batch, one transaction) or onRecord call took",
    advice: { explicitBucketBoundaries: DURATION_BUCKETS },
  });
  const lag = meter.createHistogram("billing.consumer.lag", {
    unit: "s",
    description:
      "Age of each handled batch's oldest record (now - occurred_at) when it was written",
    advice: { explicitBucketBoundaries: LAG_BUCKETS },
  });
  return { observed: consumerObservables(meter), duration, lag };
}

/**
 * Reports a `UsageConsumer`'s counters (`consumer.stats()`, read once per collection) as
 * OpenTelemetry observable instruments, and each write that succeeded (`observeBatches`) into
 * two histograms: its duration and its lag (the age of its oldest record when it was handled:
 * one value per batch, not per record, so a batch of 2,000 records costs one recording).
 * Returns a handle whose `stop()` unregisters both.
 */
export function instrumentConsumer(
  consumer: UsageConsumer,
  options?: MetricsOptions,
): MetricsHandle {
  const meter = meterOf(options);
  const { observed, duration, lag } = consumerInstruments(meter);
  const unobserve = consumer.observeBatches((b) => {
    duration.record(b.durationMs / 1000);
    if (b.lagMs !== undefined) lag.record(b.lagMs / 1000);
  });
  const all: Observable[] = Object.values(observed);
  const callback = (r: BatchObservableResult) => {
    const s = consumer.stats();
    const { messages, records, handled, duplicates, rejected, failed } = observed;
    const { idConflicts, rejectedStored, reconnects, pending, connected } = observed;
    r.observe(messages, s.received);
    r.observe(records, s.records);
    r.observe(handled, s.handled);
    r.observe(duplicates, s.duplicates);
    r.observe(rejected, s.rejectedDeliveries);
    r.observe(idConflicts, s.idConflicts);
    r.observe(rejectedStored, s.rejectedStored);
    r.observe(failed, s.failed);
    r.observe(reconnects, s.reconnects);
    r.observe(pending, s.pending);
    r.observe(connected, s.connected ? 1 : 0);
  };
  meter.addBatchObservableCallback(callback, all);
  let stopped = false;
  return {
    stop() {
      if (stopped) return;
      stopped = true;
      unobserve();
      meter.removeBatchObservableCallback(callback, all);
    },
  };
}
