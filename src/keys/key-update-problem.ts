import type { KeyStatus, KeyUpdate } from "../../gen/billing/v1/usage_pb.js";
import { isSha256Hex } from "../common/sha256-hex.js";
import { type KeyRulesInit, keyRulesProblem } from "./key-rules.js";

/**
 * What makes a decoded `KeyUpdate` unfit to apply, or undefined when it is fit: a version (> 0), a
 * `sentAt`, and every key a SHA-256 fingerprint (64 lowercase hex characters). With `rules` (what
 * `signKeyUpdate` checks before signing) every key's rules must also be well-formed
 * (`"pkg.Service/Method"` or `"pkg.Service/*"` names, rate limits with a limit and a window above 0,
 * quotas naming a module). The client applies without `rules`: it decides per key, and a key whose
 * rules it cannot enforce is refused on its own (see `KeyList`), so one bad entry from a backend in
 * another language cannot hold back the rest of the update (a block of another key above all).
 */
export function keyUpdateProblem(
  u: KeyUpdate,
  rules = true,
): { field: string; problem: string } | undefined {
  if (u.version === 0n) return { field: "version", problem: "must be set (> 0)" };
  if (u.sentAt === undefined) return { field: "sentAt", problem: "must be set" };
  for (let i = 0; i < u.keys.length; i++) {
    const bad = keyStatusProblem(u.keys[i] as KeyStatus, i, rules);
    if (bad !== undefined) return bad;
  }
  return undefined;
}

/**
 * What makes `keys[i]` of a `KeyUpdate` unfit (see `keyUpdateProblem`), or undefined: its key a
 * SHA-256 fingerprint and, with `rules`, its rules well-formed.
 */
export function keyStatusProblem(
  k: Pick<KeyStatus, "apiKeySha256">,
  i: number,
  rules: boolean,
): { field: string; problem: string } | undefined {
  if (!isSha256Hex(k.apiKeySha256)) {
    return {
      field: `keys[${i}].apiKeySha256`,
      problem: "must be a SHA-256 fingerprint (64 lowercase hex characters)",
    };
  }
  if (!rules) return undefined;
  const bad = keyRulesProblem(k as KeyRulesInit);
  return bad === undefined ? undefined : { field: `keys[${i}].${bad.field}`, problem: bad.problem };
}
