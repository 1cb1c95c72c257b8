import {
  type KeyRules,
  type LimitRule,
  methodAllowed,
  quotaLeft,
  takeQuota,
  tokensAt,
} from "./key-rules.js";

/** Why the rules refuse a call (the interceptor turns it into a Connect error). */
export type RuleRefusal =
  | { outcome: "expired" }
  | { outcome: "method_denied" }
  | { outcome: "rate_limited"; retryAfterSeconds: number }
  | { outcome: "quota_exhausted"; module: string };

/*
 * Rate limits are token buckets, per key and per process: a bucket holds at most `limit` tokens,
 * starts full, and refills continuously at `limit` per window. A request limit needs one token
 * and takes it when the call is let in; a usage limit lets a call in while its bucket is above 0,
 * and `reportUsage` takes the reported usage afterwards (it may go below 0: the debt is repaid
 * before the next call). Error bound against "at most `limit` per window": over any span of T
 * seconds at most `limit + limit × T / window` pass, so any single window may see up to
 * 2 × limit (a full bucket, then its refill), never more; over long spans the rate is exact.
 * State: two numbers per limit, made on first use. Time: `performance.now()` (monotonic).
 */

/**
 * The longest wait told (`retry-after`), in seconds: 2^31-1 (about 68 years). A usage debt may
 * legitimately need several windows to repay, so the wait is not capped at one window; the cap
 * keeps it an integer in plain digits (no "4.7e+21") that any client parses.
 */
const MAX_RETRY_AFTER_S = 2 ** 31 - 1;

function bucket(rules: KeyRules, now: number): number[] {
  let b = rules.buckets;
  if (b === undefined) {
    b = new Array<number>(rules.plan.limits.length * 2);
    for (let i = 0; i < rules.plan.limits.length; i++) {
      b[2 * i] = (rules.plan.limits[i] as LimitRule).limit;
      b[2 * i + 1] = now;
    }
    rules.buckets = b;
  }
  return b;
}

/** Refills limit `i` up to `now` and returns its tokens. */
function refill(rules: KeyRules, b: number[], i: number, now: number): number {
  const tokens = tokensAt(rules.plan.limits[i] as LimitRule, b, 2 * i, now);
  b[2 * i] = tokens;
  b[2 * i + 1] = now;
  return tokens;
}

const counts = (l: LimitRule, module: string | undefined) =>
  module === undefined || l.module === "" || l.module === module;

/**
 * Decides a call for a key with rules, synchronously (so concurrent calls cannot both take the
 * last token): expired, then method not allowed, then a rate limit at its limit, then a quota at
 * or below 0. When the call is let in, each request limit gives one token. `module`: the module
 * the method bills, when known (then only that module's usage limits and quotas apply); undefined:
 * all of them.
 */
export function admitCall(
  rules: KeyRules,
  method: string,
  module: string | undefined,
  wallNow: number = Date.now(),
  now: number = performance.now(),
): RuleRefusal | undefined {
  if (rules.expiresAtMs !== undefined && wallNow >= rules.expiresAtMs)
    return { outcome: "expired" };
  if (!methodAllowed(rules, method)) return { outcome: "method_denied" };
  const limits = rules.plan.limits;
  if (limits.length > 0) {
    const b = bucket(rules, now);
    let waitMs = -1;
    for (let i = 0; i < limits.length; i++) {
      const l = limits[i] as LimitRule;
      if (!counts(l, module)) continue;
      const tokens = refill(rules, b, i, now);
      // A request takes a whole token; usage is taken afterwards, so above 0 is enough.
      const need = l.module === "" ? 1 : 0;
      if (l.module === "" ? tokens < 1 : tokens <= 0) {
        waitMs = Math.max(waitMs, ((need - tokens) * l.windowMs) / l.limit);
      }
    }
    if (waitMs >= 0) {
      const s = Math.ceil(waitMs / 1000);
      return {
        outcome: "rate_limited",
        retryAfterSeconds: s < MAX_RETRY_AFTER_S ? Math.max(1, s) : MAX_RETRY_AFTER_S,
      };
    }
  }
  const q = rules.plan.quotaModules;
  for (let i = 0; i < q.length; i++) {
    const m = q[i] as string;
    if ((module === undefined || m === module) && quotaLeft(rules, i) <= 0) {
      return { outcome: "quota_exhausted", module: m };
    }
  }
  if (limits.length > 0) {
    const b = rules.buckets as number[];
    for (let i = 0; i < limits.length; i++) {
      if ((limits[i] as LimitRule).module === "") b[2 * i] = (b[2 * i] as number) - 1;
    }
  }
  return undefined;
}

/** Debits usage reported for `module`: its quotas and its usage rate limits. */
export function debitUsage(
  rules: KeyRules,
  module: string,
  amount: number,
  now: number = performance.now(),
): void {
  const q = rules.plan.quotaModules;
  for (let i = 0; i < q.length; i++) {
    if (q[i] === module) takeQuota(rules, i, amount);
  }
  const limits = rules.plan.limits;
  for (let i = 0; i < limits.length; i++) {
    if ((limits[i] as LimitRule).module !== module) continue;
    const b = bucket(rules, now);
    b[2 * i] = refill(rules, b, i, now) - amount;
  }
}
