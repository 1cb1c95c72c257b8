import type { BatchObservableResult, Observable } from "@opentelemetry/api";
import type { BillingClient } from "../publisher/billing-client.js";
import { type MetricsHandle, type MetricsOptions, meterOf } from "./meter-of.js";

/**
 * Reports a `BillingClient`'s counters and state as OpenTelemetry observable instruments. Every
 * value is read from `client.stats()` once per collection (one batch callback): no counter is
 * kept twice, and reporting costs nothing between collections. Returns a handle whose `stop()`
 * unregisters the callback. The instruments are listed in the README ("Metrics").
 */
export function instrumentClient(client: BillingClient, options?: MetricsOptions): MetricsHandle {
  const meter = meterOf(options);
  const counter = (name: string, unit: string, description: string) =>
    meter.createObservableCounter(name, { unit, description });
  const upDown = (name: string, unit: string, description: string) =>
    meter.createObservableUpDownCounter(name, { unit, description });
  const gauge = (name: string, unit: string, description: string) =>
    meter.createObservableGauge(name, { unit, description });

  const accepted = counter(
    "billing.records.accepted",
    "{record}",
    "Records accepted by reportUsage (or restored from the spool): published + queued",
  );
  const published = counter(
    "billing.records.published",
    "{record}",
    "Records acknowledged by the broker",
  );
  const failed = counter(
    "billing.records.publish_failures",
    "{attempt}",
    "Failed publish attempts (refused by the broker or cut off by a disconnect); all retried",
  );
  const refused = counter(
    "billing.records.refused",
    "{record}",
    "reportUsage calls refused, by BillingError code (billing.refusal.reason)",
  );
  const queued = upDown(
    "billing.records.queued",
    "{record}",
    "Records accepted and not yet acknowledged (with a spool: the spooled ones)",
  );
  const queuedBytes = upDown("billing.records.queued.size", "By", "Encoded bytes of those records");
  const inFlight = upDown(
    "billing.records.in_flight",
    "{record}",
    "Records published and waiting for their PUBACK",
  );
  const retrying = upDown(
    "billing.records.retrying",
    "{record}",
    "Records waiting out a delay after the broker refused them",
  );
  const undeliverable = upDown(
    "billing.records.undeliverable",
    "{record}",
    "Records held as undeliverable (each dropped the connection every time it was sent)",
  );
  const connected = gauge(
    "billing.connection.up",
    "1",
    "1 while the MQTT connection is up, else 0",
  );
  const reconnects = counter(
    "billing.connection.reconnects",
    "{connection}",
    "Connections made after the first one",
  );
  const keysKnown = upDown("billing.keys.known", "{key}", "Keys in the pushed key list");
  const keysAge = gauge(
    "billing.keys.age",
    "s",
    "Time since the last key update was applied (absent before the first)",
  );
  const keysStale = gauge(
    "billing.keys.stale",
    "1",
    "1 while the key list is older than maxKeyListAgeMs (the interceptor answers Unavailable)",
  );
  const updatesApplied = counter("billing.keys.updates.applied", "{update}", "Key updates applied");
  const updatesRefused = counter(
    "billing.keys.updates.refused",
    "{update}",
    "Key updates refused, by reason (billing.refusal.reason)",
  );
  const all: Observable[] = [
    accepted,
    published,
    failed,
    refused,
    queued,
    queuedBytes,
    inFlight,
    retrying,
    undeliverable,
    connected,
    reconnects,
    keysKnown,
    keysAge,
    keysStale,
    updatesApplied,
    updatesRefused,
  ];

  const callback = (r: BatchObservableResult) => {
    const s = client.stats();
    r.observe(accepted, s.published + s.queued);
    r.observe(published, s.published);
    r.observe(failed, s.failed);
    for (const [reason, n] of Object.entries(s.rejectedByCode)) {
      r.observe(refused, n, { "billing.refusal.reason": reason });
    }
    r.observe(queued, s.queued);
    r.observe(queuedBytes, s.queuedBytes);
    r.observe(inFlight, s.inFlight);
    r.observe(retrying, s.retrying);
    r.observe(undeliverable, s.undeliverable);
    r.observe(connected, s.connected ? 1 : 0);
    r.observe(reconnects, s.reconnects);
    r.observe(keysKnown, s.keysKnown);
    if (s.keysAgeMs !== undefined) r.observe(keysAge, s.keysAgeMs / 1000);
    r.observe(keysStale, s.keysStale ? 1 : 0);
    r.observe(updatesApplied, s.keyUpdates);
    for (const [reason, n] of Object.entries(s.keyUpdatesRefused)) {
      // Every reason is reported from the start (0 included), so a rate over it is defined.
      r.observe(updatesRefused, n, { "billing.refusal.reason": reason });
    }
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
