import { KeyState } from "../../gen/billing/v1/usage_pb.js";
import { withDeadline } from "../common/deadline.js";
import { LruMap } from "../common/lru-map.js";
import type { KeyInfo } from "../keys/key-list.js";
import { carryOver, type KeyRules, keyRulesOf, keyRulesProblem } from "../keys/key-rules.js";
import { debitedByReports } from "../keys/usage-debits.js";
import type { KeySource } from "./key-source.js";

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
  rateLimits?: { limit: number; windowSeconds: number; module?: string }[];
  /** Units left per module, as in `KeyStatus.quotas`. Default: none. */
  quotas?: { module: string; remaining: number }[];
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

/** How `verifyKeySource` caches and bounds the verifier. */
export interface VerifyCacheOptions {
  ttlMs: number;
  negativeTtlMs: number;
  maxEntries: number;
  timeoutMs: number;
}

interface Entry {
  value: KeyInfo | undefined;
  expiresAt: number;
}

/**
 * A custom verifier as a key source. Answers are cached by key fingerprint: valid keys for `ttlMs`,
 * unknown keys for `negativeTtlMs`, in two separate maps of at most `maxEntries` each, least
 * recently used out first. A valid key's entry also holds its rate-limit and quota state, and it
 * stays (expired answers included, until evicted) so a fresh answer keeps the buckets: callers
 * flooding the cache with unknown keys cannot evict it and refill a bucket; only more than
 * `maxEntries` valid keys in use can. Concurrent lookups of one key share a single verifier call
 * (single flight). A verifier that throws or misses its deadline, or answers with malformed rules,
 * rejects the lookup, and nothing is cached. Usage reported for a cached key debits its cached
 * quotas and usage limits.
 */
export function verifyKeySource(
  verify: (apiKey: string) => Promise<VerifiedKey | null>,
  o: VerifyCacheOptions,
): KeySource {
  const valid = new LruMap<Entry>(o.maxEntries);
  const unknown = new LruMap<number>(o.maxEntries); // fingerprint → expiry (ms since the epoch)
  const inflight = new Map<string, Promise<KeyInfo | undefined>>();

  const store = (hash: string, value: KeyInfo | undefined) => {
    if (value === undefined) {
      valid.delete(hash);
      if (o.negativeTtlMs > 0) unknown.set(hash, Date.now() + o.negativeTtlMs);
      return;
    }
    unknown.delete(hash);
    if (o.ttlMs <= 0) return;
    // A fresh answer brings fresh quota figures; rate-limit state stays while the limits do.
    carryOver(valid.peek(hash)?.value?.rules, value.rules);
    valid.set(hash, { value, expiresAt: Date.now() + o.ttlMs });
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
    rulesOf: (hash) => valid.peek(hash)?.value?.rules,
    loaded: () => true,
    lookup(hash, apiKey) {
      const now = Date.now();
      const hit = valid.get(hash);
      if (hit !== undefined && hit.expiresAt > now) return hit.value;
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
  // What reportUsage reports for a cached key debits its quotas and usage limits here too.
  debitedByReports(source);
  return source;
}
