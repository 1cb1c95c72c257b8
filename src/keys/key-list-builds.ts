import type { KeyStatus } from "../../gen/billing/v1/usage_pb.js";
import type { KeyEntries } from "./key-entries.js";
import type { KeyChange, KeyInfo } from "./key-info.js";
import { ShardedMap } from "./sharded-map.js";
import { pastDeadline } from "./time-slices.js";

// The next key list, built beside the current one in steps (see time-slices.ts) and then swapped
// in whole by KeyList.swap: a call never sees half an update.

/** A snapshot's list: its entries, in a new map. */
export class SnapshotBuild {
  readonly next = new ShardedMap<KeyInfo>();
  /** With `withChanges`: every key the new list holds (the keys it drops come from the swap). */
  readonly changes: KeyChange[] | undefined;
  /** With `withKeys`: the entries as messages, for listeners. */
  readonly keys: KeyStatus[] | undefined;
  private i = 0;
  private walk: Iterator<[string, KeyInfo]> | undefined;

  constructor(
    private readonly entries: KeyEntries,
    withChanges: boolean,
    withKeys: boolean,
  ) {
    this.changes = withChanges ? [] : undefined;
    this.keys = withKeys ? [] : undefined;
  }

  readonly step = (deadline: number): boolean => {
    const { entries, next, keys } = this;
    for (; this.i < entries.count; this.i++) {
      if (pastDeadline(this.i, deadline)) return false;
      const { hash, info } = entries.read(this.i);
      if (info === undefined) next.delete(hash);
      else next.set(hash, info);
      keys?.push(entries.status(this.i));
    }
    const changes = this.changes;
    if (changes === undefined) return true;
    this.walk ??= next.entries();
    for (let j = 0; ; j++) {
      if (pastDeadline(j + 1, deadline)) return false;
      const r = this.walk.next();
      if (r.done) return true;
      changes.push({ apiKeySha256: r.value[0], info: r.value[1] });
    }
  };
}

/**
 * A delta's list: a copy of the current one with the delta's entries applied (for a delta too
 * large to apply in one step). `replaced` keeps the entries it replaces or removes.
 */
export class DeltaCopyBuild {
  readonly next = new ShardedMap<KeyInfo>();
  readonly replaced = new ShardedMap<KeyInfo>();
  /** With `withChanges`: each key the delta names, with its entry after it. */
  readonly changes: KeyChange[] | undefined;
  readonly keys: KeyStatus[] | undefined;
  private readonly touched: ShardedMap<KeyInfo | undefined> | undefined;
  private readonly copy: Iterator<[string, KeyInfo]>;
  private copied = false;
  private i = 0;
  private walk: Iterator<[string, KeyInfo | undefined]> | undefined;
  /** How many entries the delta holds (as `changed` counts them). */
  touchedCount = 0;

  constructor(
    private readonly current: ShardedMap<KeyInfo>,
    private readonly entries: KeyEntries,
    withChanges: boolean,
    withKeys: boolean,
  ) {
    this.copy = current.entries();
    this.touched = withChanges ? new ShardedMap() : undefined;
    this.changes = withChanges ? [] : undefined;
    this.keys = withKeys ? [] : undefined;
  }

  readonly step = (deadline: number): boolean => {
    const { next, entries, current, replaced, touched, keys } = this;
    for (let j = 0; !this.copied; j++) {
      if (pastDeadline(j + 1, deadline)) return false;
      const r = this.copy.next();
      if (r.done) this.copied = true;
      else next.set(r.value[0], r.value[1]);
    }
    for (; this.i < entries.count; this.i++) {
      if (pastDeadline(this.i, deadline)) return false;
      const { hash, info } = entries.read(this.i);
      const old = current.get(hash);
      if (old !== undefined && !replaced.has(hash)) replaced.set(hash, old);
      if (info === undefined) next.delete(hash);
      else next.set(hash, info);
      touched?.set(hash, info);
      this.touchedCount++;
      keys?.push(entries.status(this.i));
    }
    if (touched === undefined) return true;
    this.walk ??= touched.entries();
    for (let j = 0; ; j++) {
      if (pastDeadline(j + 1, deadline)) return false;
      const r = this.walk.next();
      if (r.done) return true;
      this.changes?.push({ apiKeySha256: r.value[0], info: r.value[1] });
    }
  };
}

/** A small delta's entries, staged at once, and how much they would grow the list. */
export class DeltaInPlace {
  /** Each key the delta names, with its entry after it (undefined: removed). */
  readonly staged = new Map<string, KeyInfo | undefined>();
  /** How many keys applying it adds (negative when it removes more). */
  readonly growth: number;

  constructor(entries: KeyEntries, current: ShardedMap<KeyInfo>) {
    let growth = 0;
    for (let i = 0; i < entries.count; i++) {
      const { hash, info } = entries.read(i);
      this.staged.set(hash, info);
    }
    for (const [hash, info] of this.staged) {
      growth += (info === undefined ? 0 : 1) - (current.has(hash) ? 1 : 0);
    }
    this.growth = growth;
  }
}
