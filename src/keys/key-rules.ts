import { nameProblem } from "../common/text.js";

/** A rate limit as the SDK keeps it; keys with the same limits share one frozen array of these. */
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
  readonly exact: ReadonlySet<string>;
  readonly services: ReadonlySet<string>;
}

/**
 * What a key may do beyond active/blocked, kept compactly: the parts many keys share (allowed
 * methods, rate limits, quota modules) are interned, so a key costs one small object and its
 * quota figures. Undefined on a `KeyInfo` whose key has no rules.
 */
export interface KeyRules {
  /** When the key expires, ms since the epoch; `Infinity`: never. */
  readonly expiresAtMs: number;
  /** Undefined: every method. */
  readonly methods: AllowedMethods | undefined;
  readonly limits: readonly LimitRule[];
  readonly quotaModules: readonly string[];
  /** Units left per `quotaModules[i]`: the backend's figure, minus what was reported since. */
  readonly remaining: number[];
  /** Token-bucket state per `limits[i]` (`[tokens, atMs]` pairs); made on first use. */
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
/** Interned parts beyond this many distinct values are kept per key (correct, just bigger). */
const MAX_INTERNED = 4096;
const NO_QUOTA: number[] = [];
const interned = new Map<string, unknown>();

function intern<T>(id: string, make: () => T): T {
  const hit = interned.get(id) as T | undefined;
  if (hit !== undefined) return hit;
  const value = make();
  if (interned.size < MAX_INTERNED) interned.set(id, value);
  return value;
}

const moduleProblem = (m: string) =>
  m.length > 128 ? "must be at most 128 characters" : nameProblem(m);

/** Why the rules cannot be applied (field relative to the key, and problem), or undefined. */
export function keyRulesProblem(r: KeyRulesInit): { field: string; problem: string } | undefined {
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
    const limit = Number(l.limit);
    if (!(limit > 0) || !Number.isSafeInteger(limit)) {
      return { field: `rateLimits[${i}].limit`, problem: "must be an integer in 1..2^53-1" };
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

/** The compact rules of `r` (checked by `keyRulesProblem` first), or undefined when it has none. */
export function keyRulesOf(r: KeyRulesInit): KeyRules | undefined {
  const expiresAtMs = r.expiresAtMs ?? Number.POSITIVE_INFINITY;
  const m = r.allowedMethods ?? [];
  const l = r.rateLimits ?? [];
  const q = r.quotas ?? [];
  if (expiresAtMs === Number.POSITIVE_INFINITY && m.length + l.length + q.length === 0) {
    return undefined;
  }
  const methods =
    m.length === 0
      ? undefined
      : intern(`m${[...m].sort().join(" ")}`, () => {
          const exact = new Set<string>();
          const services = new Set<string>();
          for (const name of m) {
            if (name.endsWith("/*")) services.add(name.slice(0, -2));
            else exact.add(name);
          }
          return { exact, services };
        });
  const limitRules = l.map((x) => ({
    limit: Number(x.limit),
    windowMs: x.windowSeconds * 1000,
    module: x.module ?? "",
  }));
  const limits = intern(`l${JSON.stringify(limitRules)}`, () => Object.freeze(limitRules));
  const quotaModules = intern(`q${JSON.stringify(q.map((x) => x.module))}`, () =>
    Object.freeze(q.map((x) => x.module)),
  );
  const remaining = q.length === 0 ? NO_QUOTA : q.map((x) => Number(x.remaining));
  return { expiresAtMs, methods, limits, quotaModules, remaining, buckets: undefined };
}

/** Whether the rules let the key call `method` (`"pkg.Service/Method"`). */
export function methodAllowed(rules: KeyRules, method: string): boolean {
  const m = rules.methods;
  if (m === undefined || m.exact.has(method)) return true;
  const slash = method.lastIndexOf("/");
  return m.services.has(method.slice(0, slash));
}

/**
 * Keeps the rate-limit state of a key across an update that leaves its limits as they were (a
 * snapshot every minute must not refill every bucket); quota figures always come from the update.
 */
export function carryOver(previous: KeyRules | undefined, next: KeyRules | undefined): void {
  if (previous?.buckets === undefined || next === undefined) return;
  const a = previous.limits;
  const b = next.limits;
  if (a !== b) {
    if (a.length !== b.length) return;
    for (let i = 0; i < a.length; i++) {
      const x = a[i] as LimitRule;
      const y = b[i] as LimitRule;
      if (x.limit !== y.limit || x.windowMs !== y.windowMs || x.module !== y.module) return;
    }
  }
  next.buckets = previous.buckets;
}
