import { KeyState } from "../../gen/billing/v1/usage_pb.js";
import { BillingError } from "../billing-error.js";
import { withDeadline } from "../common/deadline.js";
import { LruMap } from "../common/lru-map.js";
import type { KeyInfo } from "../keys/key-list.js";
import { type KeyRules, keyRulesOf, keyRulesProblem } from "../keys/key-rules.js";
import { debitedByReports } from "../keys/usage-debits.js";
import type { KeySource } from "./key-source.js";
import { type RuleState, VerifyRuleStates } from "./verify-rule-states.js";

/** What a custom verifier says about a valid key. */
export interface VerifiedKey {
  /** The application that owns the key. */
  appId: string;
  /** ACTIVE (default) or BLOCKED. */
  state?: KeyState;
  /** Why the key is blocked (shown to the caller). */
  reason?: string;
  /**
   * When the key expires: a `Date` with a valid time, or a finite number of ms since the epoch.
   * Anything else (an ISO string, an Invalid Date, NaN, Infinity) is malformed: the call is refused
   * `Unavailable`, as for other malformed rules. Default (or null): never.
   */
  expiresAt?: Date | number;
  /** `"pkg.Service/Method"` or `"pkg.Service/*"` names the key may call. Default: all methods. */
  allowedMethods?: string[];
  /** Rate limits, as in `KeyStatus.rate_limits` (`module` "": requests). Default: none. */
  rateLimits?: {
    /** How many in one window (> 0). */
    limit: number;
    /** The window's length in seconds (> 0). */
    windowSeconds: number;
    /**
     * What it counts: `""` requests (debited when a call is let in), else the usage reported for
     * that module (debited by `reportUsage`). Default: `""`.
     */
    module?: string;
  }[];
  /** Units left per module, as in `KeyStatus.quotas`. Default: none. */
  quotas?: {
    /** The module whose usage it bounds (not empty). */
    module: string;
    /**
     * Units left as the verifier counted them; the SDK subtracts what `reportUsage` reports
     * after that, and refuses calls at or below 0.
     */
    remaining: number;
  }[];
}

/** A verifier's answer as a key-list entry; throws when its rules are malformed. */
function infoOfVerified(found: VerifiedKey): KeyInfo {
  const e: unknown = found.expiresAt;
  // Anything else (an ISO string, an Invalid Date, NaN) is malformed, not "never expires".
  const expiresAtMs =
    e === undefined || e === null
      ? undefined
      : e instanceof Date
        ? e.getTime()
        : typeof e === "number"
          ? e
          : NaN;
  const init = { ...found, expiresAtMs };
  const problem = keyRulesProblem(init);
  if (problem !== undefined) {
    throw new Error(`the verifier's answer: ${problem.field} ${problem.problem}`);
  }
  const rules = keyRulesOf(init);
  const info = {
    appId: found.appId,
    state: found.state ?? KeyState.ACTIVE,
    reason: found.reason ?? "",
  };
  return rules === undefined ? info : { ...info, rules };
}

/** Whether a call with this answer can be let in (on some method): active, not expired. */
function canLetIn(info: KeyInfo): boolean {
  const expiresAtMs = info.rules?.expiresAtMs;
  return info.state === KeyState.ACTIVE && (expiresAtMs === undefined || Date.now() < expiresAtMs);
}

/** How `verifyKeySource` caches and bounds the verifier. */
export interface VerifyCacheOptions {
  ttlMs: number;
  negativeTtlMs: number;
  maxEntries: number;
  timeoutMs: number;
}

/** Refuses cache options that would turn the bounds off (NaN, a negative time, no size bound). */
function checkCacheOptions(o: VerifyCacheOptions): void {
  for (const [name, ms] of [
    ["cache.ttlMs", o.ttlMs],
    ["cache.negativeTtlMs", o.negativeTtlMs],
    ["verifyTimeoutMs", o.timeoutMs],
  ] as const) {
    if (typeof ms !== "number" || Number.isNaN(ms) || ms < 0) {
      throw BillingError.invalid(name, `must be a number of milliseconds ≥ 0, not ${String(ms)}`);
    }
  }
  if (!Number.isSafeInteger(o.maxEntries) || o.maxEntries < 1) {
    throw BillingError.invalid(
      "cache.maxEntries",
      `must be a positive integer, not ${String(o.maxEntries)}`,
    );
  }
}

interface Entry {
  value: KeyInfo;
  /** The key's rule state, when the answer has rules (`value.rules` is its `rules`). */
  state: RuleState | undefined;
  expiresAt: number;
}

/**
 * A custom verifier as a key source. Answers are cached by key fingerprint: valid keys for `ttlMs`,
 * unknown keys for `negativeTtlMs`, in two separate maps of at most `maxEntries` each, least
 * recently used out first. The rate-limit and quota state of a key lives apart from its answer
 * (`VerifyRuleStates`), so every `ttlMs` (0 included: nothing cached) keeps its limits, and a
 * flood of unknown keys cannot refill a bucket. Concurrent lookups of one key share a single
 * verifier call (single flight). A verifier that throws or misses its deadline, or answers with
 * malformed rules, rejects the lookup, and nothing is cached. Usage reported for a key debits its
 * kept quotas and usage limits. Throws `INVALID_ARGUMENT` for a bad option.
 */
export function verifyKeySource(
  verify: (apiKey: string) => Promise<VerifiedKey | null>,
  o: VerifyCacheOptions,
): KeySource {
  checkCacheOptions(o);
  const valid = new LruMap<Entry>(o.maxEntries);
  const unknown = new LruMap<number>(o.maxEntries); // fingerprint → expiry (ms since the epoch)
  const states = new VerifyRuleStates(o.maxEntries);
  const inflight = new Map<string, Promise<KeyInfo | undefined>>();

  const store = (hash: string, value: KeyInfo | undefined) => {
    if (value === undefined) {
      valid.delete(hash);
      if (o.negativeTtlMs > 0) unknown.set(hash, Date.now() + o.negativeTtlMs);
      return;
    }
    unknown.delete(hash);
    // Before anyone decides on it: the answer's rules take the key's buckets and debits. Only an
    // answer that can let a call in does: a refused key (blocked, deleted, expired) takes no
    // place among the rule states, so a flood of them cannot push out a live key's buckets.
    const state =
      value.rules === undefined || !canLetIn(value) ? undefined : states.adopt(hash, value.rules);
    if (o.ttlMs > 0) valid.set(hash, { value, state, expiresAt: Date.now() + o.ttlMs });
  };

  const call = async (apiKey: string): Promise<KeyInfo | undefined> => {
    const found = await withDeadline(
      Promise.resolve().then(() => verify(apiKey)),
      o.timeoutMs,
      "the API key verifier",
    );
    if (found === null || found === undefined) return undefined;
    return infoOfVerified(found);
  };

  const source: KeySource & { rulesOf(hash: string): KeyRules | undefined } = {
    rulesOf: (hash) => states.rulesOf(hash),
    loaded: () => true,
    lookup(hash, apiKey) {
      const now = Date.now();
      const hit = valid.get(hash);
      if (hit !== undefined && hit.expiresAt > now) {
        if (hit.state !== undefined) states.touch(hash, hit.state);
        return hit.value;
      }
      if (hit === undefined && (unknown.peek(hash) ?? 0) > now) return undefined;
      let pending = inflight.get(hash);
      if (pending === undefined) {
        pending = call(apiKey).then(
          (value) => {
            inflight.delete(hash);
            store(hash, value);
            return value;
          },
          (err: unknown) => {
            inflight.delete(hash);
            throw err;
          },
        );
        inflight.set(hash, pending);
      }
      return pending;
    },
  };
  // What reportUsage reports for a key debits its kept quotas and usage limits here too.
  debitedByReports(source);
  return source;
}
