import { LruMap } from "../common/lru-map.js";
import { carryOver, type KeyRules, quotaLeft, quotasLeft, takeQuota } from "../keys/key-rules.js";

/** The fewest keys whose rule state is kept, whatever `cache.maxEntries` says. */
export const MIN_RULE_STATES = 10_000;

/** The rule state of one key a verifier answered for. */
export interface RuleState {
  /** The rules of the latest answer, with the key's buckets and what was reported since. */
  readonly rules: KeyRules;
  /** The verifier's own quota figures behind `rules` (before local debits), in plan order. */
  readonly figures: readonly number[];
}

/**
 * The k-th quota of `module` in `rules`' plan (k counted from 0), or -1: quotas are matched by
 * module, in order when a module is listed twice.
 */
function nthQuota(rules: KeyRules, module: string, k: number): number {
  const q = rules.plan.quotaModules;
  for (let i = 0, seen = 0; i < q.length; i++) {
    if (q[i] === module && seen++ === k) return i;
  }
  return -1;
}

/**
 * Keeps what was reported against a quota since the verifier last changed its figure: a fresh
 * answer with the figure the previous one had means the verifier has not counted anything since
 * (usage reaches its backend later), so the local debits stay; a changed figure replaces them.
 */
function keepDebits(previous: RuleState, next: KeyRules, figures: readonly number[]): void {
  const seen = new Map<string, number>();
  next.plan.quotaModules.forEach((module, i) => {
    const k = seen.get(module) ?? 0;
    seen.set(module, k + 1);
    const j = nthQuota(previous.rules, module, k);
    if (j >= 0 && previous.figures[j] === figures[i]) {
      takeQuota(next, i, (figures[i] as number) - quotaLeft(previous.rules, j));
    }
  });
}

/**
 * The rate-limit and quota state of the keys a verifier answered for, by key fingerprint, apart
 * from the answer cache: an answer cached for 0 ms (or evicted, or expired) does not take the
 * key's buckets or its local debits with it. Each fresh answer's rules are adopted here: the
 * buckets of limits that stay (by `carryOver`) and the debits of unchanged quota figures carry
 * over. Bounded: at most `max(maxEntries, 10,000)` keys, least recently used out first. Only keys
 * the verifier answered with rules, and that can let a call in (active, not expired), enter, so
 * unknown and refused keys cannot push a state out; a key whose state is pushed out by more keys
 * in use than that starts with full buckets, as a new key does.
 */
export class VerifyRuleStates {
  private readonly states: LruMap<RuleState>;

  constructor(maxEntries: number) {
    this.states = new LruMap(Math.max(maxEntries, MIN_RULE_STATES));
  }

  /** The rules kept for the key, with its state (what `reportUsage` debits), or undefined. */
  rulesOf(hash: string): KeyRules | undefined {
    return this.states.peek(hash)?.rules;
  }

  /** Makes `rules`, a fresh answer's, the key's: with the state the key had. */
  adopt(hash: string, rules: KeyRules): RuleState {
    const figures = quotasLeft(rules);
    const previous = this.states.peek(hash);
    if (previous !== undefined) {
      carryOver(previous.rules, rules);
      keepDebits(previous, rules, figures);
    }
    const state = { rules, figures };
    this.states.set(hash, state);
    return state;
  }

  /** Marks a cached answer's state used, and keeps it again if it was pushed out meanwhile. */
  touch(hash: string, state: RuleState): void {
    if (this.states.get(hash) === undefined) this.states.set(hash, state);
  }
}
