import type { KeyUpdate } from "../../gen/billing/v1/usage_pb.js";
import type { Refusal } from "./key-update-refusal.js";

/** What became of one payload. */
export type KeyUpdateOutcome =
  | {
      readonly applied: true;
      /** The update without its keys (with them when a listener wants them). */
      readonly update: KeyUpdate;
      /** How many keys it changed (for a snapshot: the keys it holds and those it dropped). */
      readonly changed: number;
      /**
       * The list is incomplete (this or an earlier delta skipped versions, or an update was
       * lost): the client should ask for a snapshot.
       */
      readonly gap: boolean;
      /** A snapshot sent again (same version, same keys) only made the list current again. */
      readonly refreshed: boolean;
    }
  | { readonly applied: false; readonly reason: Refusal["reason"]; readonly detail: string }
  | {
      readonly applied: false;
      readonly reason: undefined;
      /**
       * Not decided: the update was lost (the worker stopped while checking it, or too many
       * bytes were waiting); the list is marked incomplete, so the client asks for a snapshot.
       * Undefined when the gate was closed.
       */
      readonly lost: string | undefined;
    };

/** A refusal outcome. */
export const refuse = (reason: Refusal["reason"], detail: string): KeyUpdateOutcome => ({
  applied: false,
  reason,
  detail,
});
/** An update lost before it was decided (`undefined`: the gate was closed). */
export const lose = (lost: string | undefined): KeyUpdateOutcome => ({
  applied: false,
  reason: undefined,
  lost,
});
