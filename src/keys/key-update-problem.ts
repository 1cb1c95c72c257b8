import type { KeyUpdate } from "../../gen/billing/v1/usage_pb.js";
import { isSha256Hex } from "../common/sha256-hex.js";
import { type KeyRulesInit, keyRulesProblem } from "./key-rules.js";

/**
 * What makes a decoded `KeyUpdate` unfit to apply, or undefined when it is fit: the rules both
 * sides check (`signKeyUpdate` before signing, the client before applying). A version (> 0), a
 * `sentAt`, every key a SHA-256 fingerprint (64 lowercase hex characters), and its rules
 * well-formed (`"pkg.Service/Method"` or `"pkg.Service/*"` names, rate limits with a limit and a
 * window above 0, quotas naming a module).
 */
export function keyUpdateProblem(u: KeyUpdate): { field: string; problem: string } | undefined {
  if (u.version === 0n) return { field: "version", problem: "must be set (> 0)" };
  if (u.sentAt === undefined) return { field: "sentAt", problem: "must be set" };
  for (let i = 0; i < u.keys.length; i++) {
    if (!isSha256Hex(u.keys[i]?.apiKeySha256)) {
      return {
        field: `keys[${i}].apiKeySha256`,
        problem: "must be a SHA-256 fingerprint (64 lowercase hex characters)",
      };
    }
    const bad = keyRulesProblem(u.keys[i] as KeyRulesInit);
    if (bad !== undefined) return { field: `keys[${i}].${bad.field}`, problem: bad.problem };
  }
  return undefined;
}
