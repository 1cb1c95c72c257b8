import type { KeyUpdateHead } from "./key-update-check.js";
import type { Refusal } from "./key-update-refusal.js";

/** What the gate knows of the list's versions. */
export interface VersionState {
  /** The list's version (0 before the first snapshot). */
  readonly version: bigint;
  /** False after a skipped version or a lost update, until a snapshot at or above `version`. */
  readonly complete: boolean;
  /** When the list was last made current (ms since the epoch). */
  readonly currentAt: number | undefined;
  /** The version and keys hash of the last snapshot applied. */
  readonly snapshotAt:
    | { readonly version: bigint; readonly keysHash: string | undefined }
    | undefined;
}

/**
 * Whether the list takes an update with this head: apply it, refresh the list's age, or refuse
 * it. A snapshot sets the version; a delta applies on top of the list it finds. A delta
 * before the first snapshot is applied but sets nothing (the snapshot replaces it). A delta that
 * skips versions is applied and reported as a gap, and the list is then **incomplete**: an update
 * in between (a revocation, say) may be missing (so is it after an update was lost). An
 * incomplete list is never refreshed by deltas, only by a snapshot at or above its version; the
 * client keeps asking for one. At the list's own version: a delta is a `duplicate`; a snapshot
 * completes an incomplete list, or (on a complete list) is taken whole if the version was reached
 * by a delta; a snapshot with the same keys as the snapshot that set the version (in any order)
 * and a later `sentAt` refreshes the list's age (counted as applied: the backend re-sent its
 * list), and with an earlier or equal one is a `duplicate`; one with other keys is refused as
 * `invalid` (two lists cannot share a version: is a second backend, or one that lost its state,
 * issuing versions?).
 */
export function versionDecision(
  list: VersionState,
  head: KeyUpdateHead,
  now: number,
): "apply" | "refresh" | Refusal {
  const v = head.version;
  if (v < list.version) {
    return {
      reason: "replayed",
      detail: `version ${v} is older than ${list.version}, the last applied`,
    };
  }
  const duplicate: Refusal = { reason: "duplicate", detail: `version ${v} was applied already` };
  if (v > list.version) return "apply";
  if (!head.snapshot) return duplicate;
  if (!list.complete) return "apply"; // the snapshot that completes it
  const at = list.snapshotAt;
  if (at?.version !== v) return "apply"; // the version came from a delta: take the whole list
  if (at.keysHash !== head.keysHash) {
    // Not a replay (that would hold the same keys) nor a rollback (the version is the same):
    // two different lists signed under one version, which the versions exist to rule out.
    return {
      reason: "invalid",
      detail: `version ${v} was applied already with other keys: two lists cannot share a version (is a second backend, or one that lost its state, issuing versions?)`,
    };
  }
  return Math.min(now, head.sentAtMs) > (list.currentAt ?? Number.NEGATIVE_INFINITY)
    ? "refresh"
    : duplicate;
}
