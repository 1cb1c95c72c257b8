import {
  AggregationTemporality,
  type DataPoint,
  type Histogram,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from "@opentelemetry/sdk-metrics";

/** One collection: instrument name → its data points (attributes and value). */
export type Collected = Map<string, { unit: string; points: DataPoint<number | Histogram>[] }>;

/**
 * A real OpenTelemetry SDK MeterProvider whose reader exports (cumulative) to an in-memory
 * exporter only when `collect()` asks: what an OTLP or Prometheus exporter would get.
 */
export function testMeterProvider() {
  const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
  const meterProvider = new MeterProvider({ readers: [reader] });
  return {
    meterProvider,
    async collect(): Promise<Collected> {
      exporter.reset();
      await reader.forceFlush();
      const out: Collected = new Map();
      for (const rm of exporter.getMetrics()) {
        for (const sm of rm.scopeMetrics) {
          for (const m of sm.metrics) {
            out.set(m.descriptor.name, {
              unit: m.descriptor.unit,
              points: m.dataPoints as DataPoint<number | Histogram>[],
            });
          }
        }
      }
      return out;
    },
    shutdown: () => meterProvider.shutdown(),
  };
}

/** The value of `name` (summed over the points whose attributes include `attrs`); undefined when absent. */
export function metricValue(
  c: Collected,
  name: string,
  attrs: Record<string, string> = {},
): number | undefined {
  const m = c.get(name);
  const points = (m?.points ?? []).filter((p) =>
    Object.entries(attrs).every(([k, v]) => p.attributes[k] === v),
  );
  if (points.length === 0) return undefined;
  let sum = 0;
  for (const p of points) {
    sum += typeof p.value === "number" ? p.value : (p.value as Histogram).count;
  }
  return sum;
}
