import type { Attributes, BatchObservableResult } from "@opentelemetry/api";
import { BillingError } from "../billing-error.js";
import type { ApiKeyDecision } from "../interceptor/require-api-key.js";
import { type MetricsHandle, type MetricsOptions, meterOf } from "./meter-of.js";

/** Options of `instrumentDecisions()`. */
export interface DecisionMetricsOptions extends MetricsOptions {
  /** Another `onDecision` to call after recording (your own logging, say). Default: none. */
  onDecision?: ((decision: ApiKeyDecision) => void) | undefined;
  /**
   * The attributes of the latency histogram (`billing.interceptor.decision.duration`): `"none"`
   * (one distribution), `"outcome"` (`billing.decision.outcome`), or `"all"` (outcome,
   * `rpc.service`, `rpc.method`). The SDK hashes a measurement's attributes at every `record()`:
   * measured, +0.1 µs per call with none, +0.6 µs with the outcome, +1.3–2 µs with all three
   * (the interceptor alone costs ~3 µs). The decisions counter always has all three (it is
   * counted here and observed at collection, at no per-call SDK cost). Default: `"none"`.
   */
  durationAttributes?: "none" | "outcome" | "all" | undefined;
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

/** The count of one (method, outcome), and the attributes its measurements carry. */
interface Cell {
  /** Its place in `cells`. */
  readonly index: number;
  readonly method: string;
  readonly outcome: string;
  /** The counter's attributes: outcome, service, method. */
  readonly attributes: Attributes;
  /** The histogram's (see `durationAttributes`); undefined: none. */
  readonly durationAttributes: Attributes | undefined;
  count: number;
}

/** Latencies buffered (all cells together, 48 KiB) until the next collection or until full. */
const BUFFER = 4096;

/**
 * Counts `requireApiKey()` decisions by outcome and method (`billing.interceptor.decisions`) and
 * records how long each took (`billing.interceptor.decision.duration`, seconds). The outcome is
 * recorded as the string the interceptor gives (`allowed`, `missing`, `blocked`, …): outcomes
 * added later are counted without a change here. Method and service follow OpenTelemetry's RPC
 * attributes (`rpc.service`, `rpc.method`).
 *
 * Cost, measured (`npm run bench`): what is slow is the SDK hashing a measurement's attributes
 * (sorting their keys and `JSON.stringify`, ~0.6 µs a key) at every `record()`, whenever it runs
 * (the first version buffered latencies to record them at collection with all three attributes:
 * +2 µs a call all the same). So the latency histogram has no attributes unless asked
 * (`durationAttributes`); the call path counts into a cell found by reference (the last one,
 * else two map lookups) and writes the latency and its cell's index into two preallocated typed
 * arrays (4,096 entries for all cells together), recorded into the SDK histogram at collection or
 * when full: every latency is recorded, exactly (count, sum, buckets, min and max are the SDK's).
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
  const by = options?.durationAttributes ?? "none";
  if (by !== "none" && by !== "outcome" && by !== "all") {
    throw BillingError.invalid("durationAttributes", `must be "none", "outcome" or "all"`);
  }
  // One cell per (method, outcome), made once: the methods are those the server routes (a
  // bounded set); outcomes are a handful. Outcome attribute sets are shared between methods.
  const byMethod = new Map<string, Map<string, Cell>>();
  const byOutcome = new Map<string, Attributes>();
  const cells: Cell[] = [];
  const cellOf = (method: string, outcome: string): Cell => {
    let ofMethod = byMethod.get(method);
    if (ofMethod === undefined) {
      ofMethod = new Map();
      byMethod.set(method, ofMethod);
    }
    let cell = ofMethod.get(outcome);
    if (cell === undefined) {
      const slash = method.lastIndexOf("/");
      const attributes = {
        "billing.decision.outcome": outcome,
        "rpc.service": method.slice(0, slash),
        "rpc.method": method.slice(slash + 1),
      };
      let outcomeOnly = byOutcome.get(outcome);
      if (outcomeOnly === undefined) {
        outcomeOnly = { "billing.decision.outcome": outcome };
        byOutcome.set(outcome, outcomeOnly);
      }
      const durationAttributes =
        by === "all" ? attributes : by === "outcome" ? outcomeOnly : undefined;
      cell = {
        index: cells.length,
        method,
        outcome,
        attributes,
        durationAttributes,
        count: 0,
      };
      ofMethod.set(outcome, cell);
      cells.push(cell);
    }
    return cell;
  };
  // The latencies not recorded yet, `[0..buffered)`, and the index of each one's cell.
  const latencies = new Float64Array(BUFFER);
  const cellIndex = new Uint32Array(BUFFER);
  let buffered = 0;
  const drain = () => {
    const n = buffered;
    buffered = 0;
    for (let i = 0; i < n; i++) {
      const cell = cells[cellIndex[i] as number] as Cell;
      duration.record(latencies[i] as number, cell.durationAttributes);
    }
  };
  const callback = (r: BatchObservableResult) => {
    for (const cell of cells) r.observe(decisions, cell.count, cell.attributes);
    drain();
  };
  meter.addBatchObservableCallback(callback, [decisions]);
  let last: Cell | undefined;
  let stopped = false;
  return {
    onDecision(decision) {
      if (!stopped) {
        let cell = last;
        if (
          cell === undefined ||
          cell.outcome !== decision.outcome ||
          cell.method !== decision.method
        ) {
          cell = cellOf(decision.method, decision.outcome);
          last = cell;
        }
        cell.count++;
        latencies[buffered] = decision.latencyMs / 1000;
        cellIndex[buffered++] = cell.index;
        if (buffered === BUFFER) drain();
      }
      next?.(decision);
    },
    stop() {
      if (stopped) return;
      stopped = true;
      drain();
      meter.removeBatchObservableCallback(callback, [decisions]);
    },
  };
}
