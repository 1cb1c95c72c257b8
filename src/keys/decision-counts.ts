import { processSlot } from "../common/process-slots.js";

/**
 * What `requireApiKey()` decided about a call: `allowed`, `exempt`, or why it was refused. Plain
 * strings, stable: metrics may use them as labels.
 */
export type DecisionOutcome =
  | "allowed"
  | "exempt"
  | "missing"
  | "invalid"
  | "blocked"
  | "unavailable"
  | "expired"
  | "method_denied"
  | "rate_limited"
  | "quota_exhausted";

/** Calls decided, by outcome: totals since the process started, over every interceptor. */
export type DecisionCounts = Record<DecisionOutcome, number>;

const counts = processSlot<DecisionCounts>("decisionCounts", () => ({
  allowed: 0,
  exempt: 0,
  missing: 0,
  invalid: 0,
  blocked: 0,
  unavailable: 0,
  expired: 0,
  method_denied: 0,
  rate_limited: 0,
  quota_exhausted: 0,
}));

/** Counts one decision. */
export function countDecision(outcome: DecisionOutcome): void {
  counts[outcome]++;
}

/** A copy of the counts (also in `client.stats().decisions`). */
export function decisionCounts(): DecisionCounts {
  return { ...counts };
}
