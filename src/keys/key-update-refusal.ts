/** Why a key update was refused. A refused update leaves the key list as it was. */
export type KeyUpdateRefusal =
  | "missingSignature"
  | "unknownSigner"
  | "badSignature"
  | "undecodable"
  | "invalid"
  | "replayed"
  | "duplicate"
  | "tooLarge"
  | "wrongAudience";

/** Refused key updates by reason. */
export type KeyUpdateRefusals = Record<KeyUpdateRefusal, number>;

/** A refusal: its reason and what was wrong (never a raw key). */
export interface Refusal {
  readonly reason: KeyUpdateRefusal;
  readonly detail: string;
}

/** Every reason at 0. */
export function noRefusals(): KeyUpdateRefusals {
  return {
    missingSignature: 0,
    unknownSigner: 0,
    badSignature: 0,
    undecodable: 0,
    invalid: 0,
    replayed: 0,
    duplicate: 0,
    tooLarge: 0,
    wrongAudience: 0,
  };
}
