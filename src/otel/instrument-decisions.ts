import type { Attributes } from "@opentelemetry/api";
import type { ApiKeyDecision } from "../interceptor/require-api-key.js";
import { type MetricsHandle, type MetricsOptions, meterOf } from "./meter-of.js";

/** Options of `instrumentDecisions()`. */
export interface DecisionMetricsOptions extends MetricsOptions {
  /** Another `onDecision` to call after recording (your own logging, say). Default: none. */
  onDecision?: ((decision: ApiKeyDecision) => void) | undefined;
}

/** What `instrumentDecisions()` returns: pass `onDecision` to `requireApiKey()`. */
export interface DecisionMetrics extends MetricsHandle {
  /** Records one decision; give it to `requireApiKey({ onDecision })`. After `stop()`, only forwards. */
  readonly onDecision: (decision: ApiKeyDecision) => void;
}

/** Decision latencies are micro- to milliseconds: buckets from 10 µs to 2.5 s (in seconds). */
const BUCKETS = [
  0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
  0.25, 0.5, 1, 2.5,
];

/**
 * Counts `requireApiKey()` decisions by outcome and method (`billing.interceptor.decisions`) and
 * records how long each took (`billing.interceptor.decision.duration`, seconds). The outcome is
 * recorded as the string the interceptor gives (`allowed`, `missing`, `blocked`, …): outcomes
 * added later are counted without a change here. Method and service follow OpenTelemetry's RPC
 * attributes (`rpc.service`, `rpc.method`).
 */
export function instrumentDecisions(options?: DecisionMetricsOptions): DecisionMetrics {
  const meter = meterOf(options);
  const decisions = meter.createCounter("billing.interceptor.decisions", {
    unit: "{call}",
    description: "requireApiKey decisions, by outcome (billing.decision.outcome) and method",
  });
  const duration = meter.createHistogram("billing.interceptor.decision.duration", {
    unit: "s",
    description: "Time requireApiKey took to decide on a call",
    advice: { explicitBucketBoundaries: BUCKETS },
  });
  const next = options?.onDecision;
  // One attribute object per (method, outcome), made once: the hot path allocates nothing. The
  // methods are those the server routes (a bounded set); outcomes are a handful.
  const attributes = new Map<string, Attributes>();
  const attributesOf = (method: string, outcome: string): Attributes => {
    const key = `${outcome} ${method}`;
    let a = attributes.get(key);
    if (a === undefined) {
      const slash = method.lastIndexOf("/");
      a = {
        "billing.decision.outcome": outcome,
        "rpc.service": method.slice(0, slash),
        "rpc.method": method.slice(slash + 1),
      };
      attributes.set(key, a);
    }
    return a;
  };
  let stopped = false;
  return {
    onDecision(decision) {
      if (!stopped) {
        const a = attributesOf(decision.method, decision.outcome);
        decisions.add(1, a);
        duration.record(decision.latencyMs / 1000, a);
      }
      next?.(decision);
    },
    stop() {
      stopped = true;
    },
  };
}
