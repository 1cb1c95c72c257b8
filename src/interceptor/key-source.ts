import type { KeyInfo } from "../keys/key-list.js";

/**
 * Where `requireApiKey()` learns what a key may do: the only thing the interceptor depends on.
 * Two implementations: the key list the backend pushes (`pushedKeySource`) and a custom
 * verifier behind a cache (`verifyKeySource`).
 */
export interface KeySource {
  /** Whether the source can answer now (false: the call is refused `Unavailable`). */
  loaded(): boolean;
  /**
   * What the source says of a key: its entry, or undefined for an unknown key. May be a
   * promise (a verifier); a rejection refuses the call `Unavailable` (fail closed).
   */
  lookup(apiKeySha256: string, apiKey: string): KeyInfo | undefined | Promise<KeyInfo | undefined>;
}
