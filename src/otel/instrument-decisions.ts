import type {
  Attributes,
  BatchObservableResult,
  Histogram,
  Meter,
  ObservableCounter,
} from "@opentelemetry/api";
import { BillingError } from "../billing-error.js";
import type { ApiKeyDecision } from "../interceptor/require-api-key.js";
import { type MetricsHandle, type MetricsOptions, meterOf } from "./meter-of.js";

/** Options of `instrumentDecisions()`. */
export interface DecisionMetricsOptions extends MetricsOptions {
  /** Another `onDecision` to call after recording (your own logging, say). Default: none. */
  onDecision?: ((decision: ApiKeyDecision) => void) | undefined;
  /**
   * The attributes of the latency histogram (`billing.interceptor.decision.duration`): `"none"`
   * (one distribution), `"outcome"` (`billing.decision.outcome`), or `"all"` (outcome and
   * `rpc.method`). The SDK hashes a measurement's attributes at every `record()`:
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
  readonly method: string;
  readonly outcome: string;
  /** The counter's attributes: outcome and method. */
  readonly attributes: Attributes;
  /** The histogram's (see `durationAttributes`); undefined: none. */
  readonly durationAttributes: Attributes | undefined;
  count: number;
}

/** Latencies buffered (all cells together, 48 KiB) until the next collection. */
const BUFFER = 4096;

/**
 * What every `instrumentDecisions()` on one meter shares: one count per (method, outcome), so
 * that two interceptors (two servers, two routers) add up instead of the last observation of an
 * attribute set hiding the other; counts outlive `stop()` (a counter never goes back).
 */
class DecisionCore {
  readonly decisions: ObservableCounter;
  readonly duration: Histogram;
  private readonly byMethod = new Map<string, Map<string, Cell>>();
  private readonly byOutcome = new Map<string, Attributes>();
  private readonly cells: Cell[] = [];
  // The latencies not recorded yet, `[0..buffered)`, and each one's cell.
  private readonly latencies = new Float64Array(BUFFER);
  private readonly bufferedCells: (Cell | undefined)[] = new Array(BUFFER);
  private buffered = 0;
  private last: Cell | undefined;
  private users = 0;
  private readonly callback = (r: BatchObservableResult) => {
    for (const cell of this.cells) r.observe(this.decisions, cell.count, cell.attributes);
    this.drain();
  };

  constructor(
    private readonly meter: Meter,
    readonly by: "none" | "outcome" | "all",
  ) {
    this.decisions = meter.createObservableCounter("billing.interceptor.decisions", {
      unit: "{call}",
      description: "requireApiKey decisions, by outcome (billing.decision.outcome) and method",
    });
    this.duration = meter.createHistogram("billing.interceptor.decision.duration", {
      unit: "s",
      description: "Time requireApiKey took to decide on a call",
      advice: { explicitBucketBoundaries: BUCKETS },
    });
  }

  acquire(): void {
    if (this.users++ === 0) this.meter.addBatchObservableCallback(this.callback, [this.decisions]);
  }

  release(): void {
    if (--this.users > 0) return;
    this.drain();
    this.meter.removeBatchObservableCallback(this.callback, [this.decisions]);
  }

  record(decision: ApiKeyDecision): void {
    let cell = this.last;
    if (
      cell === undefined ||
      cell.outcome !== decision.outcome ||
      cell.method !== decision.method
    ) {
      cell = this.cellOf(decision.method, decision.outcome);
      this.last = cell;
    }
    cell.count++;
    const seconds = decision.latencyMs / 1000;
    // Full (more than BUFFER decisions between two collections): recorded at once, one by one,
    // never a whole buffer on one call.
    if (this.buffered === BUFFER) this.duration.record(seconds, cell.durationAttributes);
    else {
      this.latencies[this.buffered] = seconds;
      this.bufferedCells[this.buffered++] = cell;
    }
  }

  private drain(): void {
    const n = this.buffered;
    this.buffered = 0; // first: a record() that throws loses this batch, never grows the buffer
    for (let i = 0; i < n; i++) {
      const cell = this.bufferedCells[i] as Cell;
      this.bufferedCells[i] = undefined;
      this.duration.record(this.latencies[i] as number, cell.durationAttributes);
    }
  }

  // One cell per (method, outcome), made once: the methods are those the server routes (a
  // bounded set: an unknown path is answered 404 before any interceptor); outcomes a handful.
  private cellOf(method: string, outcome: string): Cell {
    let ofMethod = this.byMethod.get(method);
    if (ofMethod === undefined) {
      ofMethod = new Map();
      this.byMethod.set(method, ofMethod);
    }
    let cell = ofMethod.get(outcome);
    if (cell === undefined) {
      const attributes = { "billing.decision.outcome": outcome, "rpc.method": method };
      let outcomeOnly = this.byOutcome.get(outcome);
      if (outcomeOnly === undefined) {
        outcomeOnly = { "billing.decision.outcome": outcome };
        this.byOutcome.set(outcome, outcomeOnly);
      }
      const by = this.by;
      const durationAttributes =
        by === "all" ? attributes : by === "outcome" ? outcomeOnly : undefined;
      cell = { method, outcome, attributes, durationAttributes, count: 0 };
      ofMethod.set(outcome, cell);
      this.cells.push(cell);
    }
    return cell;
  }
}

const cores = new WeakMap<Meter, DecisionCore>();

/**
 * Counts `requireApiKey()` decisions by outcome and method (`billing.interceptor.decisions`) and
 * records how long each took (`billing.interceptor.decision.duration`, seconds). The outcome is
 * recorded as the string the interceptor gives (`allowed`, `missing`, `blocked`, …): outcomes
 * added later are counted without a change here. The method is OpenTelemetry's fully qualified
 * `rpc.method` (`pkg.Service/Method`). Several calls on one meter share their counts (two
 * interceptors add up); they must agree on `durationAttributes`.
 *
 * Cost, measured (`npm run bench`): what is slow is the SDK hashing a measurement's attributes
 * (sorting their keys and `JSON.stringify`, ~0.6 µs a key) at every `record()`, whenever it runs.
 * So the latency histogram has no attributes unless asked (`durationAttributes`); the call path
 * counts into a cell found by reference (the last one, else two map lookups) and buffers the
 * latency (4,096 for all cells together), recorded into the SDK histogram at collection, or at
 * once while the buffer is full: every latency is recorded, exactly (count, sum, buckets, min and
 * max are the SDK's).
 */
export function instrumentDecisions(options?: DecisionMetricsOptions): DecisionMetrics {
  const meter = meterOf(options);
  const by = options?.durationAttributes ?? "none";
  if (by !== "none" && by !== "outcome" && by !== "all") {
    throw BillingError.invalid("durationAttributes", `must be "none", "outcome" or "all"`);
  }
  let core = cores.get(meter);
  if (core === undefined) {
    core = new DecisionCore(meter, by);
    cores.set(meter, core);
  } else if (core.by !== by) {
    throw BillingError.invalid(
      "durationAttributes",
      `must be "${core.by}", as for the instrumentDecisions() already made on this meter`,
    );
  }
  const shared = core;
  shared.acquire();
  const next = options?.onDecision;
  let stopped = false;
  return {
    onDecision(decision) {
      if (!stopped) shared.record(decision);
      next?.(decision);
    },
    stop() {
      if (stopped) return;
      stopped = true;
      shared.release();
    },
  };
}
