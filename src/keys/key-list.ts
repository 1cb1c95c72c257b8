import { KeyState, type KeyStatus, type KeyUpdate } from "../../gen/billing/v1/usage_pb.js";
import { hashApiKey, MAX_API_KEY_LENGTH } from "../common/api-key-hash.js";
import {
  carryOver,
  type KeyRules,
  type KeyRulesInit,
  keyRulesOf,
  keyRulesProblem,
} from "./key-rules.js";

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

/**
 * The entry of a pushed key, keeping the rate-limit state of `previous` when its limits stay; a
 * key whose rules cannot be enforced (a rate limit of 0, the proto default when unset; a window of
 * 0; a malformed method or module name) fails closed on its own: it is kept BLOCKED with the
 * reason "invalid rules" (a blocked key keeps its own reason), and `invalid` is told.
 */
function infoOf(k: KeyStatus, previous: KeyInfo | undefined, invalid: () => void): KeyInfo {
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
  carryOver(previous?.rules, rules);
  return { state: k.state, appId: k.appId, reason: k.reason, rules };
}

/** One key whose entry an update changed; `info` is undefined when the key was removed. */
export interface KeyChange {
  /** The key's fingerprint: hex SHA-256 of the raw key. */
  readonly apiKeySha256: string;
  /** The key's entry after the update; undefined: the key was removed. */
  readonly info: KeyInfo | undefined;
}

/** Called after an update was applied, with the keys it changed. */
export type KeyListener = (changes: readonly KeyChange[], update: KeyUpdate) => void;

/**
 * The API-key list the billing backend pushes, keyed by SHA-256 (raw keys are never stored).
 * "Not loaded" until the first snapshot, and not usable after `usableUntil` (the staleness bound,
 * `maxKeyListAgeMs`): the interceptor then answers Unavailable, not invalid.
 */
export class KeyList {
  private entries = new Map<string, KeyInfo>();
  private listeners = new Set<KeyListener>();
  private loadedFlag = false;
  /** Key entries received whose rules could not be enforced (each kept blocked: fail closed). */
  invalidRules = 0;
  /**
   * Until when (ms since the epoch) the list may be decided on; `Infinity`: no bound. Set by the
   * client from `maxKeyListAgeMs` each time a fresh update is applied.
   */
  usableUntil = Number.POSITIVE_INFINITY;

  private checked = false;

  /**
   * `onListenerError` is told of a listener that threw; `onFirstCheck` runs once, at the first
   * key decision made on this list (`noteCheck`): a warning about a list that can never load
   * belongs to a process that checks keys, not to one that only reports usage.
   */
  constructor(
    private readonly onListenerError: (err: unknown) => void = () => {},
    private readonly onFirstCheck: () => void = () => {},
  ) {}

  /** `requireApiKey()` is deciding a call on this list: runs `onFirstCheck` the first time. */
  noteCheck(): void {
    if (this.checked) return;
    this.checked = true;
    this.onFirstCheck();
  }

  private readonly countInvalid = () => {
    this.invalidRules++;
  };

  /** True once a snapshot has arrived. */
  get loaded(): boolean {
    return this.loadedFlag;
  }

  /** Whether the list may be decided on now: loaded, and not older than its bound. */
  get usable(): boolean {
    return (
      this.loadedFlag &&
      (this.usableUntil === Number.POSITIVE_INFINITY || Date.now() <= this.usableUntil)
    );
  }

  /** How many keys are known. */
  get size(): number {
    return this.entries.size;
  }

  /**
   * What the list says about a raw API key, or undefined when it does not know the key (a key
   * longer than 1,024 characters is not hashed: it is unknown).
   */
  lookup(apiKey: string): KeyInfo | undefined {
    if (apiKey.length > MAX_API_KEY_LENGTH) return undefined;
    return this.entries.get(hashApiKey(apiKey));
  }

  /** What the list says about a key by its SHA-256 (lowercase hex). */
  lookupHash(apiKeySha256: string): KeyInfo | undefined {
    return this.entries.get(apiKeySha256);
  }

  /** The rules of a key by its SHA-256, when it has any (what `reportUsage` debits). */
  rulesOf(apiKeySha256: string): KeyRules | undefined {
    return this.entries.get(apiKeySha256)?.rules;
  }

  /** Calls `listener` after every applied update. Returns a function that unsubscribes it. */
  onChange(listener: KeyListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Applies an update: a snapshot replaces the list, a delta adds, changes or (DELETED or
   * UNSPECIFIED) removes entries. The whole update is applied before any listener runs, and a
   * listener that throws is reported and does not stop the others.
   */
  apply(update: KeyUpdate): readonly KeyChange[] {
    const next = update.snapshot ? new Map<string, KeyInfo>() : this.entries;
    // A delta reports each key it names; a snapshot every key it holds, and those it dropped.
    const touched = update.snapshot ? undefined : new Set<string>();
    for (const k of update.keys) {
      const hash = k.apiKeySha256.toLowerCase();
      touched?.add(hash);
      if (k.state === KeyState.ACTIVE || k.state === KeyState.BLOCKED) {
        next.set(hash, infoOf(k, this.entries.get(hash), this.countInvalid));
      } else {
        next.delete(hash);
      }
    }
    const changes: KeyChange[] = [];
    if (touched === undefined) {
      for (const hash of this.entries.keys()) {
        if (!next.has(hash)) changes.push({ apiKeySha256: hash, info: undefined });
      }
      for (const [hash, info] of next) changes.push({ apiKeySha256: hash, info });
      this.entries = next;
      this.loadedFlag = true;
    } else {
      for (const hash of touched) changes.push({ apiKeySha256: hash, info: next.get(hash) });
    }
    for (const listener of this.listeners) {
      try {
        listener(changes, update);
      } catch (err) {
        this.onListenerError(err);
      }
    }
    return changes;
  }
}
