import type { BatchObservableResult, Observable } from "@opentelemetry/api";
import type { BillingClient } from "../publisher/client/billing-client.js";
import { type MetricsHandle, type MetricsOptions, meterOf, observables } from "./meter-of.js";

/**
 * Reports a `BillingClient`'s counters and state as OpenTelemetry observable instruments. Every
 * value is read from `client.stats()` once per collection (one batch callback): no counter is
 * kept twice, and reporting costs nothing between collections. Returns a handle whose `stop()`
 * unregisters the callback. The instruments are listed in docs/metrics.md.
 */
export function instrumentClient(client: BillingClient, options?: MetricsOptions): MetricsHandle {
  const meter = meterOf(options);
  const { counter, upDown, gauge } = observables(meter);

  const accepted = counter(
    "billing.publisher.accepted.records",
    "{record}",
    "Records accepted by reportUsage (or restored from the spool): published + queued",
  );
  const published = counter(
    "billing.publisher.published.records",
    "{record}",
    "Records acknowledged by the broker",
  );
  const failed = counter(
    "billing.publisher.failed.attempts",
    "{attempt}",
    "Failed publish attempts (refused by the broker or cut off by a disconnect); all retried",
  );
  const heldNoSubscriber = counter(
    "billing.publisher.held_no_subscriber.records",
    "{record}",
    "Records the broker answered PUBACK 0x10 (no subscriber) and dropped: kept queued and sent again",
  );
  const refused = counter(
    "billing.publisher.refused.records",
    "{record}",
    "reportUsage calls refused, by BillingError code (billing.refusal.reason)",
  );
  const queued = upDown(
    "billing.publisher.queue.count",
    "{record}",
    "Records accepted and not yet acknowledged (with a spool: the spooled ones)",
  );
  const queuedBytes = upDown(
    "billing.publisher.queue.size",
    "By",
    "Encoded bytes of those records",
  );
  const inFlight = upDown(
    "billing.publisher.in_flight.count",
    "{record}",
    "Records published and waiting for their PUBACK",
  );
  const retrying = upDown(
    "billing.publisher.retrying.count",
    "{record}",
    "Records waiting out a delay after the broker refused them",
  );
  const undeliverable = upDown(
    "billing.publisher.undeliverable.count",
    "{record}",
    "Records held as undeliverable (each dropped the connection every time it was sent)",
  );
  const connected = gauge(
    "billing.publisher.connection.up",
    "1",
    "1 while the MQTT connection is up, else 0",
  );
  const reconnects = counter(
    "billing.publisher.reconnects",
    "{connection}",
    "Connections made after the first one",
  );
  const keysKnown = upDown("billing.key_list.key.count", "{key}", "Keys in the pushed key list");
  const keysAge = gauge(
    "billing.key_list.age",
    "s",
    "Time since the last key update was applied (absent before the first)",
  );
  const keysStale = gauge(
    "billing.key_list.stale",
    "1",
    "1 while the key list is older than maxKeyListAgeMs (the interceptor answers Unavailable)",
  );
  const updatesApplied = counter(
    "billing.key_list.applied.updates",
    "{update}",
    "Key updates applied",
  );
  const updatesRefused = counter(
    "billing.key_list.refused.updates",
    "{update}",
    "Key updates refused, by reason (billing.refusal.reason)",
  );
  const all: Observable[] = [
    accepted,
    published,
    failed,
    heldNoSubscriber,
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
    r.observe(heldNoSubscriber, s.heldNoSubscriber);
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
