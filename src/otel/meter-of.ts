import { type Meter, type MeterProvider, metrics } from "@opentelemetry/api";

/** Options shared by the `billing-sdk/otel` instrumentation functions. */
export interface MetricsOptions {
  /**
   * Where the instruments are created. Default: the global provider
   * (`metrics.getMeterProvider()`, a no-op until an SDK registers one).
   */
  meterProvider?: MeterProvider | undefined;
}

/** The instrumentation scope of every billing-sdk instrument. */
const METER_NAME = "billing-sdk";

/** The meter of `options` (or of the global provider). */
export function meterOf(options: MetricsOptions | undefined): Meter {
  return (options?.meterProvider ?? metrics.getMeterProvider()).getMeter(METER_NAME);
}

/** What every `instrument*` function returns. */
export interface MetricsHandle {
  /** Unregisters the callbacks: the instruments stop reporting. A second call does nothing. */
  stop(): void;
}

/** Makers of the observable instruments of `meter`, by kind: (name, unit, description). */
export function observables(meter: Meter) {
  return {
    counter: (name: string, unit: string, description: string) =>
      meter.createObservableCounter(name, { unit, description }),
    upDown: (name: string, unit: string, description: string) =>
      meter.createObservableUpDownCounter(name, { unit, description }),
    gauge: (name: string, unit: string, description: string) =>
      meter.createObservableGauge(name, { unit, description }),
  };
}
