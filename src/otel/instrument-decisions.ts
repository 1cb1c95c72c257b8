import type { Attributes, BatchObservableResult } from "@opentelemetry/api";
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

/** Latencies buffered per attribute set before they are recorded directly (bounds memory). */
const MAX_BUFFERED = 4096;

/** The counts and buffered latencies of one (method, outcome). */
interface Cell {
  readonly attributes: Attributes;
  count: number;
  latencies: number[];
}

/**
 * Counts `requireApiKey()` decisions by outcome and method (`billing.interceptor.decisions`) and
 * records how long each took (`billing.interceptor.decision.duration`, seconds). The outcome is
 * recorded as the string the interceptor gives (`allowed`, `missing`, `blocked`, …): outcomes
 * added later are counted without a change here. Method and service follow OpenTelemetry's RPC
 * attributes (`rpc.service`, `rpc.method`).
 *
 * The call path only counts and buffers: the SDK's instrument calls (≈2 µs each, most of it
 * hashing the attributes) run at collection time, in the reader's callback, where the counts are
 * observed and the buffered latencies recorded into the histogram (at most 4,096 per method and
 * outcome are buffered; past that they are recorded at once).
 */
export function instrumentDecisions(options?: DecisionMetricsOptions): DecisionMetrics {
  const meter = meterOf(options);
  const decisions = meter.createObservableCounter("billing.interceptor.decisions", {
    unit: "{call}",
    description: "requireApiKey decisions, by outcome (billing.decision.outcome) and method",
  });
  const duration = meter.createHistogram("billing.interceptor.decision.duration", {
    unit: "s",
    description: "Time requireApiKey took to decide on a call",
    advice: { explicitBucketBoundaries: BUCKETS },
  });
  const next = options?.onDecision;
  // One cell per (method, outcome), made once: the methods are those the server routes (a
  // bounded set); outcomes are a handful.
  const byMethod = new Map<string, Map<string, Cell>>();
  const cells: Cell[] = [];
  const cellOf = (method: string, outcome: string): Cell => {
    let byOutcome = byMethod.get(method);
    if (byOutcome === undefined) {
      byOutcome = new Map();
      byMethod.set(method, byOutcome);
    }
    let cell = byOutcome.get(outcome);
    if (cell === undefined) {
      const slash = method.lastIndexOf("/");
      const attributes = {
        "billing.decision.outcome": outcome,
        "rpc.service": method.slice(0, slash),
        "rpc.method": method.slice(slash + 1),
      };
      cell = { attributes, count: 0, latencies: [] };
      byOutcome.set(outcome, cell);
      cells.push(cell);
    }
    return cell;
  };
  const drain = (cell: Cell) => {
    for (const seconds of cell.latencies) duration.record(seconds, cell.attributes);
    cell.latencies.length = 0;
  };
  const callback = (r: BatchObservableResult) => {
    for (const cell of cells) {
      r.observe(decisions, cell.count, cell.attributes);
      drain(cell);
    }
  };
  meter.addBatchObservableCallback(callback, [decisions]);
  let stopped = false;
  return {
    onDecision(decision) {
      if (!stopped) {
        const cell = cellOf(decision.method, decision.outcome);
        cell.count++;
        cell.latencies.push(decision.latencyMs / 1000);
        if (cell.latencies.length >= MAX_BUFFERED) drain(cell);
      }
      next?.(decision);
    },
    stop() {
      if (stopped) return;
      stopped = true;
      for (const cell of cells) drain(cell);
      meter.removeBatchObservableCallback(callback, [decisions]);
    },
  };
}
