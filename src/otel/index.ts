/**
 * billing-sdk/otel: OpenTelemetry metrics, an optional part. Only this entry imports
 * `@opentelemetry/api` (an optional peer dependency); the core never loads it.
 *
 * @module billing-sdk/otel
 */

export { instrumentClient } from "./instrument-client.js";
export { instrumentConsumer } from "./instrument-consumer.js";
export type { DecisionMetrics, DecisionMetricsOptions } from "./instrument-decisions.js";
export { instrumentDecisions } from "./instrument-decisions.js";
export type { MetricsHandle, MetricsOptions } from "./meter-of.js";
