import type { KeyUpdate } from "../../gen/billing/v1/usage_pb.js";
import { isSha256Hex } from "../common/sha256-hex.js";

/**
 * What makes a decoded `KeyUpdate` unfit to apply, or undefined when it is fit: the rules both
 * sides check (`signKeyUpdate` before signing, the client before applying). A version (> 0), a
 * `sentAt`, and every key a SHA-256 fingerprint (64 lowercase hex characters).
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
  }
  return undefined;
}
