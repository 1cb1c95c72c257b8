import type { KeyUpdate } from "../../gen/billing/v1/usage_pb.js";
import { hashApiKey, MAX_API_KEY_LENGTH } from "../common/api-key-hash.js";
import { decodedEntries } from "./key-entries.js";
import type { KeyChange, KeyInfo } from "./key-info.js";
import { DeltaInPlace, SnapshotBuild } from "./key-list-builds.js";
import { carryOver, type KeyRules } from "./key-rules.js";
import { ShardedMap } from "./sharded-map.js";
import { atOnce, pastDeadline } from "./time-slices.js";

export type { KeyChange, KeyInfo } from "./key-info.js";

/**
 * Called after an update was applied, with the keys it changed (for a snapshot: every key it
 * holds, then those it dropped). It runs on the event loop: for a snapshot of a million keys,
 * `changes` holds a million entries, so keep the listener cheap or hand the work on.
 */
export type KeyListener = (changes: readonly KeyChange[], update: KeyUpdate) => void;

/**
 * The API-key list the billing backend pushes, keyed by SHA-256 (raw keys are never stored).
 * "Not loaded" until the first snapshot, and not usable after `usableUntil` (the staleness bound,
 * `maxKeyListAgeMs`): the interceptor then answers Unavailable, not invalid.
 *
 * A large update is built beside the list and swapped in whole (see `KeyUpdateGate`): a lookup
 * sees the old list or the new one, never a mix. The rate-limit state of a key whose limits stay
 * is carried over to its new entry when the key is first looked up after the swap, or by the
 * pass that follows it, whichever comes first, so calls made while the update was being built
 * still count.
 */
export class KeyList {
  private entries = new ShardedMap<KeyInfo>();
  /** Entries replaced by the last swap whose rate-limit state is not carried over yet. */
  private unsettled: ShardedMap<KeyInfo> | undefined;
  private unsettledWalk: Iterator<[string, KeyInfo]> | undefined;
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

  /** Counts a key entry whose rules could not be enforced. */
  readonly countInvalid = (): void => {
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
    return this.get(hashApiKey(apiKey));
  }

  /** What the list says about a key by its SHA-256 (lowercase hex). */
  lookupHash(apiKeySha256: string): KeyInfo | undefined {
    return this.get(apiKeySha256);
  }

  /** The rules of a key by its SHA-256, when it has any (what `reportUsage` debits). */
  rulesOf(apiKeySha256: string): KeyRules | undefined {
    return this.get(apiKeySha256)?.rules;
  }

  /** Calls `listener` after every applied update. Returns a function that unsubscribes it. */
  onChange(listener: KeyListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Whether any listener wants the changes (when none does, they are not gathered). */
  get watched(): boolean {
    return this.listeners.size > 0;
  }

  /**
   * Applies an update at once: a snapshot replaces the list, a delta adds, changes or (DELETED
   * or UNSPECIFIED) removes entries. The whole update is applied before any listener runs, and a
   * listener that throws is reported and does not stop the others. It holds the event loop for
   * the whole update: the client applies large updates in slices instead (`KeyUpdateGate`).
   */
  apply(update: KeyUpdate): readonly KeyChange[] {
    atOnce((deadline) => this.settle(deadline));
    const entries = decodedEntries(update, this.countInvalid);
    let changes: KeyChange[];
    if (update.snapshot) {
      const build = new SnapshotBuild(entries, true, false);
      atOnce(build.step);
      const all = build.changes as KeyChange[];
      changes = all;
      this.swap(build.next);
      atOnce((deadline) =>
        this.settle(deadline, (hash) => all.push({ apiKeySha256: hash, info: undefined })),
      );
    } else {
      changes = this.applyInPlace(new DeltaInPlace(entries, this.entries).staged);
    }
    this.notify(changes, update);
    return changes;
  }

  /**
   * The entries as they are (for building the next list beside them; not to be changed).
   * @internal
   */
  get current(): ShardedMap<KeyInfo> {
    return this.entries;
  }

  /**
   * Swaps in `next` whole, in one step. `replaced` holds the entries it replaces, whose
   * rate-limit state `settle` then carries over; undefined: the whole list (a snapshot, which
   * loads the list).
   * @internal
   */
  swap(next: ShardedMap<KeyInfo>, replaced?: ShardedMap<KeyInfo>): void {
    const old = this.entries;
    this.entries = next;
    const unsettled = replaced ?? old;
    this.unsettled = unsettled.size > 0 ? unsettled : undefined;
    this.unsettledWalk = this.unsettled?.entries();
    if (replaced === undefined) this.loadedFlag = true;
  }

  /**
   * Carries the rate-limit state of the entries the last swap replaced over to their new ones
   * (a step: see `inSlices`), and tells `removed` each key the swap dropped.
   */
  settle(deadline: number, removed?: (apiKeySha256: string) => void): boolean {
    const walk = this.unsettledWalk;
    if (walk === undefined) return true;
    for (let i = 0; ; i++) {
      if (pastDeadline(i, deadline)) return false;
      const next = walk.next();
      if (next.done) break;
      const [hash, old] = next.value;
      const info = this.entries.get(hash);
      if (info === undefined) removed?.(hash);
      else if (info !== old) carryOver(old.rules, info.rules);
    }
    this.unsettled = undefined;
    this.unsettledWalk = undefined;
    return true;
  }

  /**
   * Applies staged delta entries to the list in place, in one step (carrying each key's
   * rate-limit state over), and returns the changes.
   */
  applyInPlace(staged: ReadonlyMap<string, KeyInfo | undefined>): KeyChange[] {
    atOnce((deadline) => this.settle(deadline));
    const changes: KeyChange[] = [];
    for (const [hash, info] of staged) {
      const old = this.entries.get(hash);
      if (info === undefined) this.entries.delete(hash);
      else {
        this.entries.set(hash, info);
        if (old !== undefined) carryOver(old.rules, info.rules);
      }
      changes.push({ apiKeySha256: hash, info });
    }
    return changes;
  }

  /** Tells every listener about an applied update; one that throws does not stop the others. */
  notify(changes: readonly KeyChange[], update: KeyUpdate): void {
    for (const listener of this.listeners) {
      try {
        listener(changes, update);
      } catch (err) {
        this.onListenerError(err);
      }
    }
  }

  /** The entry of `hash`, its rate-limit state carried over first if a swap left it unsettled. */
  private get(hash: string): KeyInfo | undefined {
    const info = this.entries.get(hash);
    const unsettled = this.unsettled;
    if (info === undefined || unsettled === undefined) return info;
    const old = unsettled.get(hash);
    if (old !== undefined) {
      unsettled.delete(hash);
      if (old !== info) carryOver(old.rules, info.rules);
    }
    return info;
  }
}
