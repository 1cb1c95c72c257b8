import type { BatchObservableResult, Observable } from "@opentelemetry/api";
import type { BillingClient } from "../publisher/client/billing-client.js";
import type { BillingStats } from "../publisher/client/billing-stats.js";
import { type MetricsHandle, type MetricsOptions, meterOf, observables } from "./meter-of.js";

/** One instrument: its kind, name, unit and description, and how it reads `client.stats()`. */
interface Instrument<V> {
  kind: "counter" | "upDown" | "gauge";
  name: string;
  unit: string;
  description: string;
  /** The value; undefined: nothing to report now. */
  read: (s: BillingStats) => V;
}

/** The instruments of one value each. */
const PLAIN: Instrument<number | undefined>[] = [
  {
    kind: "counter",
    name: "billing.publisher.accepted.records",
    unit: "{record}",
    description: "Records accepted by reportUsage (or restored from the spool): published + queued",
    read: (s) => s.published + s.queued,
  },
  {
    kind: "counter",
    name: "billing.publisher.published.records",
    unit: "{record}",
    description: "Records acknowledged by the broker",
    read: (s) => s.published,
  },
  {
    kind: "counter",
    name: "billing.publisher.failed.attempts",
    unit: "{attempt}",
    description:
      "Failed publish attempts (refused by the broker or cut off by a disconnect); all retried",
    read: (s) => s.failed,
  },
  {
    kind: "counter",
    name: "billing.publisher.held_no_subscriber.records",
    unit: "{record}",
    description:
      "Records the broker answered PUBACK 0x10 (no subscriber) and dropped: kept queued and sent again",
    read: (s) => s.heldNoSubscriber,
  },
  {
    kind: "upDown",
    name: "billing.publisher.queue.count",
    unit: "{record}",
    description: "Records accepted and not yet acknowledged (with a spool: the spooled ones)",
    read: (s) => s.queued,
  },
  {
    kind: "upDown",
    name: "billing.publisher.queue.size",
    unit: "By",
    description: "Encoded bytes of those records",
    read: (s) => s.queuedBytes,
  },
  {
    kind: "upDown",
    name: "billing.publisher.in_flight.count",
    unit: "{record}",
    description: "Records published and waiting for their PUBACK",
    read: (s) => s.inFlight,
  },
  {
    kind: "upDown",
    name: "billing.publisher.retrying.count",
    unit: "{record}",
    description: "Records waiting out a delay after the broker refused them",
    read: (s) => s.retrying,
  },
  {
    kind: "upDown",
    name: "billing.publisher.undeliverable.count",
    unit: "{record}",
    description:
      "Records held as undeliverable (each dropped the connection every time it was sent)",
    read: (s) => s.undeliverable,
  },
  {
    kind: "gauge",
    name: "billing.publisher.connection.up",
    unit: "1",
    description: "1 while the MQTT connection is up, else 0",
    read: (s) => (s.connected ? 1 : 0),
  },
  {
    kind: "counter",
    name: "billing.publisher.reconnects",
    unit: "{connection}",
    description: "Connections made after the first one",
    read: (s) => s.reconnects,
  },
  {
    kind: "upDown",
    name: "billing.key_list.key.count",
    unit: "{key}",
    description: "Keys in the pushed key list",
    read: (s) => s.keysKnown,
  },
  {
    kind: "gauge",
    name: "billing.key_list.age",
    unit: "s",
    description: "Time since the last key update was applied (absent before the first)",
    read: (s) => (s.keysAgeMs === undefined ? undefined : s.keysAgeMs / 1000),
  },
  {
    kind: "gauge",
    name: "billing.key_list.stale",
    unit: "1",
    description:
      "1 while the key list is older than maxKeyListAgeMs (the interceptor answers Unavailable)",
    read: (s) => (s.keysStale ? 1 : 0),
  },
  {
    kind: "counter",
    name: "billing.key_list.applied.updates",
    unit: "{update}",
    description: "Key updates applied",
    read: (s) => s.keyUpdates,
  },
];

/**
 * The instruments reported per reason (attribute `billing.refusal.reason`); every reason is
 * reported from the start (0 included), so a rate over it is defined.
 */
const BY_REASON: Instrument<Readonly<Record<string, number>>>[] = [
  {
    kind: "counter",
    name: "billing.publisher.refused.records",
    unit: "{record}",
    description: "reportUsage calls refused, by BillingError code (billing.refusal.reason)",
    read: (s) => s.rejectedByCode,
  },
  {
    kind: "counter",
    name: "billing.key_list.refused.updates",
    unit: "{update}",
    description: "Key updates refused, by reason (billing.refusal.reason)",
    read: (s) => s.keyUpdatesRefused,
  },
];

/**
 * Reports a `BillingClient`'s counters and state as OpenTelemetry observable instruments. Every
 * value is read from `client.stats()` once per collection (one batch callback): no counter is
 * kept twice, and reporting costs nothing between collections. Returns a handle whose `stop()`
 * unregisters the callback. The instruments are listed in docs/metrics.md.
 */
export function instrumentClient(client: BillingClient, options?: MetricsOptions): MetricsHandle {
  const meter = meterOf(options);
  const make = observables(meter);
  const create = <V>(i: Instrument<V>) => [i, make[i.kind](i.name, i.unit, i.description)] as const;
  const plain = PLAIN.map(create);
  const byReason = BY_REASON.map(create);
  const all: Observable[] = [...plain, ...byReason].map(([, o]) => o);

  const callback = (r: BatchObservableResult) => {
    const s = client.stats();
    for (const [i, o] of plain) {
      const value = i.read(s);
      if (value !== undefined) r.observe(o, value);
    }
    for (const [i, o] of byReason) {
      for (const [reason, n] of Object.entries(i.read(s))) {
        r.observe(o, n, { "billing.refusal.reason": reason });
      }
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
