import { nameProblem } from "../common/text.js";

/** A rate limit as the SDK keeps it. */
export interface LimitRule {
  /** How many in one window. */
  readonly limit: number;
  /** The window, in milliseconds. */
  readonly windowMs: number;
  /** "": counts requests; else the module whose reported usage it counts. */
  readonly module: string;
}

/** The methods a key may call: exact `"pkg.Service/Method"` names, and services allowed whole. */
export interface AllowedMethods {
  /** Methods allowed by their full `"pkg.Service/Method"` name. */
  readonly exact: ReadonlySet<string>;
  /** Services (`"pkg.Service"`) whose every method is allowed (`"pkg.Service/*"`). */
  readonly services: ReadonlySet<string>;
}

/**
 * The parts of a key's rules that many keys share (a backend's plans): one frozen object per
 * distinct combination, shared by every key that has it.
 */
export interface KeyPlan {
  /** Undefined: every method. */
  readonly methods: AllowedMethods | undefined;
  /** The rate limits, each with its own token bucket (`KeyRules.buckets`). */
  readonly limits: readonly LimitRule[];
  /** The modules with a quota, in the order of `KeyRules.quota` and `KeyRules.moreQuotas`. */
  readonly quotaModules: readonly string[];
}

/**
 * What a key may do beyond active/blocked, kept compactly: a pointer to its shared plan, its
 * expiry, and its own figures (a key with one quota keeps it in `quota`, a plain number). Undefined
 * on a `KeyInfo` whose key has no rules.
 */
export interface KeyRules {
  /** The methods, limits and quota modules this key shares with others that have the same. */
  readonly plan: KeyPlan;
  /** When the key expires, ms since the epoch; undefined: never. */
  readonly expiresAtMs: number | undefined;
  /** Units left of `plan.quotaModules[0]`: the backend's figure, minus what was reported since. */
  quota: number;
  /** Units left of `plan.quotaModules[1…]`, when there are more quotas. */
  moreQuotas: number[] | undefined;
  /** Token-bucket state per `plan.limits[i]` (`[tokens, atMs]` pairs); made on first use. */
  buckets: number[] | undefined;
}

/** The rules as the backend (a `KeyStatus`) or a verifier gives them. */
export interface KeyRulesInit {
  /** Ms since the epoch; undefined: never expires. */
  expiresAtMs?: number | undefined;
  allowedMethods?: readonly string[] | undefined;
  rateLimits?:
    | readonly { limit: number | bigint; windowSeconds: number; module?: string | undefined }[]
    | undefined;
  quotas?: readonly { module: string; remaining: number | bigint }[] | undefined;
}

const METHOD = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\/(\*|[A-Za-z_][A-Za-z0-9_]*)$/;
/** Plans beyond this many distinct ones are kept per key (correct, just bigger). */
const MAX_PLANS = 4096;
const plans = new Map<string, KeyPlan>();

const moduleProblem = (m: string) =>
  m.length > 128 ? "must be at most 128 characters" : nameProblem(m);

/** Why the rules cannot be applied (field relative to the key, and problem), or undefined. */
export function keyRulesProblem(r: KeyRulesInit): { field: string; problem: string } | undefined {
  const e = r.expiresAtMs;
  if (e !== undefined && (typeof e !== "number" || !Number.isFinite(e))) {
    return { field: "expiresAt", problem: "must be a valid Date or a finite number of ms" };
  }
  const methods = r.allowedMethods ?? [];
  for (let i = 0; i < methods.length; i++) {
    if (!METHOD.test(methods[i] as string)) {
      return {
        field: `allowedMethods[${i}]`,
        problem: 'must be "pkg.Service/Method" or "pkg.Service/*"',
      };
    }
  }
  const limits = r.rateLimits ?? [];
  for (let i = 0; i < limits.length; i++) {
    const l = limits[i] as NonNullable<KeyRulesInit["rateLimits"]>[number];
    const limit = Number(l.limit); // above 2^53-1: clamped to it (see planOf)
    if (!(limit >= 1) || !Number.isInteger(limit)) {
      return { field: `rateLimits[${i}].limit`, problem: "must be a positive integer" };
    }
    if (!Number.isInteger(l.windowSeconds) || l.windowSeconds <= 0) {
      return { field: `rateLimits[${i}].windowSeconds`, problem: "must be a positive integer" };
    }
    const p = l.module === undefined || l.module === "" ? undefined : moduleProblem(l.module);
    if (p !== undefined) return { field: `rateLimits[${i}].module`, problem: p };
  }
  const quotas = r.quotas ?? [];
  for (let i = 0; i < quotas.length; i++) {
    const q = quotas[i] as NonNullable<KeyRulesInit["quotas"]>[number];
    const p = q.module === "" ? "must not be empty" : moduleProblem(q.module);
    if (p !== undefined) return { field: `quotas[${i}].module`, problem: p };
    if (typeof q.remaining !== "bigint" && !Number.isInteger(q.remaining)) {
      return { field: `quotas[${i}].remaining`, problem: "must be an integer" };
    }
  }
  return undefined;
}

function planOf(r: KeyRulesInit): KeyPlan {
  const m = r.allowedMethods ?? [];
  const limits = (r.rateLimits ?? []).map((x) => ({
    // uint64 on the wire: a limit above 2^53-1 is kept as 2^53-1 (no process counts that far).
    limit: Math.min(Number(x.limit), Number.MAX_SAFE_INTEGER),
    windowMs: x.windowSeconds * 1000,
    module: x.module ?? "",
  }));
  const quotaModules = (r.quotas ?? []).map((x) => x.module);
  const sorted = m.length > 1 ? [...m].sort() : m;
  // Names hold no control characters (checked), so "\n" and "\u0001" separate unambiguously;
  // cheaper per key than JSON.stringify (the id is computed for every key with rules).
  let id = sorted.join("\n");
  for (const l of limits) id += `\u0001${l.limit} ${l.windowMs} ${l.module}`;
  id += `\u0001\u0001${quotaModules.join("\n")}`;
  const hit = plans.get(id);
  if (hit !== undefined) return hit;
  let methods: AllowedMethods | undefined;
  if (m.length > 0) {
    const exact = new Set<string>();
    const services = new Set<string>();
    for (const name of sorted) {
      if (name.endsWith("/*")) services.add(name.slice(0, -2));
      else exact.add(name);
    }
    methods = { exact, services };
  }
  const plan = Object.freeze({
    methods,
    limits: Object.freeze(limits),
    quotaModules: Object.freeze(quotaModules),
  });
  if (plans.size < MAX_PLANS) plans.set(id, plan);
  return plan;
}

/** The compact rules of `r` (checked by `keyRulesProblem` first), or undefined when it has none. */
export function keyRulesOf(r: KeyRulesInit): KeyRules | undefined {
  const n = (r.allowedMethods?.length ?? 0) + (r.rateLimits?.length ?? 0) + (r.quotas?.length ?? 0);
  if (r.expiresAtMs === undefined && n === 0) return undefined;
  const q = r.quotas ?? [];
  return {
    plan: planOf(r),
    expiresAtMs: r.expiresAtMs,
    quota: q.length === 0 ? 0 : Number(q[0]?.remaining),
    moreQuotas: q.length > 1 ? q.slice(1).map((x) => Number(x.remaining)) : undefined,
    buckets: undefined,
  };
}

/** Units left of quota `i` (of `plan.quotaModules`). */
export function quotaLeft(rules: KeyRules, i: number): number {
  return i === 0 ? rules.quota : (rules.moreQuotas?.[i - 1] as number);
}

/** Takes `amount` from quota `i`. */
export function takeQuota(rules: KeyRules, i: number, amount: number): void {
  if (i === 0) rules.quota -= amount;
  else if (rules.moreQuotas !== undefined) {
    rules.moreQuotas[i - 1] = (rules.moreQuotas[i - 1] as number) - amount;
  }
}

/** Every quota's units left, in `plan.quotaModules` order. */
export function quotasLeft(rules: KeyRules): number[] {
  return rules.plan.quotaModules.map((_, i) => quotaLeft(rules, i));
}

/** Whether the rules let the key call `method` (`"pkg.Service/Method"`). */
export function methodAllowed(rules: KeyRules, method: string): boolean {
  const m = rules.plan.methods;
  if (m === undefined || m.exact.has(method)) return true;
  return m.services.has(method.slice(0, method.lastIndexOf("/")));
}

/** The tokens of limit `l` at `now`: its bucket is the `[tokens, atMs]` pair at `b[at]`. */
export function tokensAt(l: LimitRule, b: readonly number[], at: number, now: number): number {
  const elapsed = Math.max(0, now - (b[at + 1] as number));
  return Math.min(l.limit, (b[at] as number) + (elapsed * l.limit) / l.windowMs);
}

const sameLimit = (x: LimitRule, y: LimitRule) =>
  x.limit === y.limit && x.windowMs === y.windowMs && x.module === y.module;

/**
 * Keeps the rate-limit state of a key across an update (a snapshot every minute, a verifier's
 * fresh answer must not refill its buckets); quota figures are the caller's business. Limits are
 * matched by what they are, (limit, window, module), not by where they sit: a limit that stays
 * keeps its bucket wherever it moves in the list, and a new or changed limit starts full.
 * Duplicates (the same limit listed twice: redundant, but allowed) are matched emptiest first:
 * the copies that remain take the lowest token counts of the copies there were, so dropping or
 * reordering a duplicate never refills the bucket that binds. `now`: `performance.now()` time.
 */
export function carryOver(
  previous: KeyRules | undefined,
  next: KeyRules | undefined,
  now: number = performance.now(),
): void {
  const old = previous?.buckets;
  if (previous === undefined || old === undefined || next === undefined) return;
  const a = previous.plan.limits;
  const b = next.plan.limits;
  if (a === b || (a.length === b.length && a.every((x, i) => sameLimit(x, b[i] as LimitRule)))) {
    next.buckets = old; // the same limits in the same order (one plan, or an equal one)
    return;
  }
  const taken = new Array<boolean>(a.length).fill(false);
  let buckets: number[] | undefined;
  for (let j = 0; j < b.length; j++) {
    const y = b[j] as LimitRule;
    let best = -1;
    let bestTokens = Number.POSITIVE_INFINITY;
    for (let i = 0; i < a.length; i++) {
      if (taken[i] || !sameLimit(a[i] as LimitRule, y)) continue;
      const tokens = tokensAt(y, old, 2 * i, now);
      if (tokens < bestTokens) [best, bestTokens] = [i, tokens];
    }
    if (best < 0) continue;
    taken[best] = true;
    if (buckets === undefined) {
      buckets = new Array<number>(b.length * 2);
      for (let k = 0; k < b.length; k++) {
        buckets[2 * k] = (b[k] as LimitRule).limit; // unmatched: a new limit starts full
        buckets[2 * k + 1] = now;
      }
    }
    buckets[2 * j] = old[2 * best] as number;
    buckets[2 * j + 1] = old[2 * best + 1] as number;
  }
  if (buckets !== undefined) next.buckets = buckets;
}
