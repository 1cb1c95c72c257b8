import type { BatchObservableResult, Observable } from "@opentelemetry/api";
import type { UsageConsumer } from "../consumer/usage-consumer-api.js";
import { type MetricsHandle, type MetricsOptions, meterOf } from "./meter-of.js";

/**
 * Reports a `UsageConsumer`'s counters (`consumer.stats()`, read once per collection) as
 * OpenTelemetry observable instruments. Returns a handle whose `stop()` unregisters the callback.
 */
export function instrumentConsumer(
  consumer: UsageConsumer,
  options?: MetricsOptions,
): MetricsHandle {
  const meter = meterOf(options);
  const counter = (name: string, unit: string, description: string) =>
    meter.createObservableCounter(name, { unit, description });
  const messages = counter(
    "billing.consumer.messages.received",
    "{message}",
    "Messages received on <prefix>/report",
  );
  const records = counter(
    "billing.consumer.records.received",
    "{record}",
    "Billable records in them, duplicates included",
  );
  const handled = counter(
    "billing.consumer.records.handled",
    "{record}",
    "Records handled for the first time (new in the store, or onRecord resolved)",
  );
  const duplicates = counter(
    "billing.consumer.records.duplicates",
    "{record}",
    "Records skipped because their id was handled before",
  );
  const rejected = counter(
    "billing.consumer.records.rejected",
    "{record}",
    "Records (or whole messages) that cannot be billed: kept as rejected and acknowledged",
  );
  const failed = counter(
    "billing.consumer.write_failures",
    "{attempt}",
    "store.write / onRecord attempts that failed or timed out (each is tried again)",
  );
  const reconnects = counter(
    "billing.consumer.reconnects",
    "{connection}",
    "Connections made after the first one",
  );
  const pending = meter.createObservableUpDownCounter("billing.consumer.messages.pending", {
    unit: "{message}",
    description: "Messages received and not yet handled (unacknowledged)",
  });
  const connected = meter.createObservableGauge("billing.consumer.connection.up", {
    unit: "1",
    description: "1 while the consumer's MQTT connection is up, else 0",
  });
  const all: Observable[] = [
    messages,
    records,
    handled,
    duplicates,
    rejected,
    failed,
    reconnects,
    pending,
    connected,
  ];
  const callback = (r: BatchObservableResult) => {
    const s = consumer.stats();
    r.observe(messages, s.received);
    r.observe(records, s.records);
    r.observe(handled, s.handled);
    r.observe(duplicates, s.duplicates);
    r.observe(rejected, s.rejected);
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
      meter.removeBatchObservableCallback(callback, all);
    },
  };
}
