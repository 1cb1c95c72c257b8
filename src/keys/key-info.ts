import { KeyState, type KeyStatus } from "../../gen/billing/v1/usage_pb.js";
import { type KeyRules, type KeyRulesInit, keyRulesOf, keyRulesProblem } from "./key-rules.js";

/** What the key list says about one API key. */
export interface KeyInfo {
  /** `KeyState.ACTIVE` or `KeyState.BLOCKED` (deleted keys are removed from the list). */
  readonly state: KeyState;
  /** The application that owns the key. */
  readonly appId: string;
  /** Why the key is blocked (from the backend; not secret); empty otherwise. */
  readonly reason: string;
  /** Expiry, allowed methods, rate limits and quotas; undefined when the key has none. */
  readonly rules?: KeyRules | undefined;
}

/** The reason a key whose rules cannot be enforced is refused with (it is kept blocked). */
export const INVALID_RULES_REASON = "invalid rules";

/** Whether an entry in this state is kept (ACTIVE, BLOCKED); any other state removes the key. */
export function isListed(state: KeyState): boolean {
  return state === KeyState.ACTIVE || state === KeyState.BLOCKED;
}

/**
 * The entry of a pushed key (its rate-limit state is carried over by the list, see
 * `carryOver`); a key whose rules cannot be enforced (a rate limit of 0, the proto default when
 * unset; a window of 0; a malformed method or module name) fails closed on its own: it is kept
 * BLOCKED with the reason "invalid rules" (a blocked key keeps its own reason), and `invalid` is
 * told.
 */
export function infoOf(k: KeyStatus, invalid: () => void): KeyInfo {
  const e = k.expiresAt;
  const init: KeyRulesInit = {
    expiresAtMs: e === undefined ? undefined : Number(e.seconds) * 1000 + e.nanos / 1e6,
    allowedMethods: k.allowedMethods,
    rateLimits: k.rateLimits,
    quotas: k.quotas,
  };
  if (keyRulesProblem(init) !== undefined) {
    invalid();
    const reason = k.state === KeyState.BLOCKED ? k.reason : INVALID_RULES_REASON;
    return { state: KeyState.BLOCKED, appId: k.appId, reason };
  }
  const rules = keyRulesOf(init);
  if (rules === undefined) return { state: k.state, appId: k.appId, reason: k.reason };
  return { state: k.state, appId: k.appId, reason: k.reason, rules };
}

/** One key whose entry an update changed; `info` is undefined when the key was removed. */
export interface KeyChange {
  /** The key's fingerprint: hex SHA-256 of the raw key. */
  readonly apiKeySha256: string;
  /** The key's entry after the update; undefined: the key was removed. */
  readonly info: KeyInfo | undefined;
}
