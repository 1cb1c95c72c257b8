import { fromBinary } from "@bufbuild/protobuf";
import { type KeyStatus, type KeyUpdate, KeyUpdateSchema } from "../../gen/billing/v1/usage_pb.js";
import { checkedEntries, type KeyEntries } from "./key-entries.js";
import { publicKeyFingerprint } from "./key-fingerprint.js";
import type { KeyChange, KeyList } from "./key-list.js";
import { DeltaCopyBuild, DeltaInPlace, SnapshotBuild } from "./key-list-builds.js";
import { versionDecision } from "./key-list-version.js";
import type { KeyUpdateHead } from "./key-update-check.js";
import type { KeyUpdateGateOptions } from "./key-update-gate-options.js";
import { KeyUpdateIntake, type Opened } from "./key-update-intake.js";
import { KeyUpdateLine } from "./key-update-line.js";
import { type KeyUpdateOutcome, lose, refuse } from "./key-update-outcome.js";
import { noRefusals, type Refusal } from "./key-update-refusal.js";
import type { KeyUpdateThread } from "./key-update-thread.js";
import { inSlices } from "./time-slices.js";

export type { KeyUpdateGateOptions } from "./key-update-gate-options.js";
export type { KeyUpdateOutcome } from "./key-update-outcome.js";
export type { KeyUpdateRefusal, KeyUpdateRefusals } from "./key-update-refusal.js";

/** A delta with at most this many keys is applied in one step; a larger one is built beside. */
const IN_PLACE_KEYS = 4096;

/**
 * Decides, for each payload that arrives on `<prefix>/keys/update`, whether it may change the
 * key list, and applies it when it may, one payload at a time in arrival order (a small delta
 * waits behind a large snapshot; see `KeyUpdateLine` for how many may wait, and how the line is
 * paced). Cheapest refusal first: the payload's size (and the bytes and updates already
 * waiting); then, off the event loop for a large payload or one that waited (the key-update
 * worker), a
 * `SignedKeyUpdate` that decodes and a signature by a configured signer that verifies (or, with
 * `acceptUnsigned`, none), before any work that grows with the payload's fields; then the signed
 * `KeyUpdate`'s version and `sentAt`, its audience, its key count; a version the list can take;
 * every key entry. Only then is the list changed: a large update is built beside the list in
 * slices of a few milliseconds and swapped in whole, so the event loop is never held long and a
 * call sees the old list or the new one. Every refusal is counted by reason.
 *
 * Versions: see `versionDecision`. The list's age runs from the `sentAt` of the last snapshot or
 * contiguous delta on a complete list (never later than its arrival): neither a replay nor a
 * delta after a gap can refresh it, so with `maxKeyListAgeMs` a missed revocation passes for at
 * most that long.
 */
export class KeyUpdateGate {
  /** Refused updates by reason. */
  readonly refused = noRefusals();
  /** Updates applied (a snapshot re-sent at the list's version that refreshed it included). */
  applied = 0;
  /**
   * How current the list is (ms since the epoch): when the last update that refreshed it was sent
   * (or arrived, if earlier). A delta after a gap does not refresh it. Undefined before the first.
   * The list's age, and `maxKeyListAgeMs` staleness, run from it.
   */
  currentAt: number | undefined;
  /** The version of the list: of the last snapshot, or delta after one. 0 before the first. */
  version = 0n;
  /** False after a delta skipped versions or an update was lost, until a snapshot at or above `version`. */
  complete = true;
  private readonly intake: KeyUpdateIntake;
  private closed = false;
  private readonly line: KeyUpdateLine;
  /** The version and keys hash of the last snapshot applied. */
  snapshotAt: { readonly version: bigint; readonly keysHash: string | undefined } | undefined;

  constructor(
    readonly keys: KeyList,
    private readonly o: KeyUpdateGateOptions,
  ) {
    this.line = new KeyUpdateLine(o.maxBytes);
    this.intake = new KeyUpdateIntake(
      {
        signers: new Map(
          [...o.publicKeys].map(([name, key]) => [
            name,
            { key, fingerprint: publicKeyFingerprint(key) },
          ]),
        ),
        acceptUnsigned: o.acceptUnsigned,
        maxKeys: o.maxKeys,
        audience: o.audience,
        acceptUnbound: o.acceptUnbound,
      },
      o,
    );
  }

  /** The key-update worker, once started (tests end it to prove that it comes back). */
  get worker(): KeyUpdateThread | undefined {
    return this.intake.thread;
  }

  /**
   * Decides on one payload, after those that arrived before it; `now` (ms since the epoch) is
   * when it arrived. With `owned`, a large payload's memory is handed to the worker (the caller
   * must not read it again): no copy is made on the event loop.
   */
  receive(payload: Uint8Array, now = Date.now(), owned = false): Promise<KeyUpdateOutcome> {
    const { maxBytes } = this.o;
    if (payload.length > maxBytes) {
      return this.settled(
        refuse("tooLarge", `${payload.length} bytes, more than maxKeyUpdateBytes (${maxBytes})`),
      );
    }
    if (payload.length === 0) {
      // What a client sees when someone clears a retained message on the topic.
      return this.settled(refuse("undecodable", "an empty payload"));
    }
    const full = this.line.full(payload.length);
    if (full !== undefined) {
      this.complete = false; // it may have been genuine: ask for a snapshot
      return this.settled(lose(full));
    }
    return this.line
      .join(payload.length, (queued) => this.decide(payload, now, owned, queued))
      .then((o) => this.count(o));
  }

  /** Ends the worker; updates still waiting are dropped. */
  close(): void {
    this.closed = true;
    this.intake.close();
  }

  private settled(outcome: KeyUpdateOutcome): Promise<KeyUpdateOutcome> {
    return Promise.resolve(this.count(outcome));
  }

  private count(outcome: KeyUpdateOutcome): KeyUpdateOutcome {
    if (outcome.applied) this.applied++;
    else if (outcome.reason !== undefined) this.refused[outcome.reason]++;
    return outcome;
  }

  private async decide(
    payload: Uint8Array,
    now: number,
    owned: boolean,
    queued: boolean,
  ): Promise<KeyUpdateOutcome> {
    if (this.closed) return lose(undefined);
    let opened: Opened | Refusal;
    try {
      opened = await this.intake.open(payload, owned, queued);
    } catch (err) {
      return this.lost(err);
    }
    if (!("head" in opened)) return refuse(opened.reason, opened.detail);
    const { head } = opened;
    const decision = versionDecision(this, head, now);
    if (decision !== "apply") opened.drop();
    if (decision === "refresh") return this.refreshed(head, now);
    if (decision !== "apply") return refuse(decision.reason, decision.detail);
    let keys: Awaited<ReturnType<Opened["keys"]>>;
    try {
      keys = await opened.keys();
    } catch (err) {
      return this.lost(err);
    }
    if (!("offsets" in keys)) return refuse(keys.reason, keys.detail);
    const entries = checkedEntries(keys.bytes, keys.offsets, keys.decoded, this.keys.countInvalid);
    return head.snapshot
      ? this.applySnapshot(head, entries, now)
      : this.applyDelta(head, entries, now);
  }

  private lost(err: unknown): KeyUpdateOutcome {
    if (this.closed) return lose(undefined);
    this.complete = false; // it may have been genuine: ask for a snapshot
    return lose(err instanceof Error ? err.message : String(err));
  }

  private refreshed(head: KeyUpdateHead, now: number): KeyUpdateOutcome {
    this.refresh(head.sentAtMs, now);
    return { applied: true, update: headUpdate(head), changed: 0, gap: false, refreshed: true };
  }

  private async applySnapshot(
    head: KeyUpdateHead,
    entries: KeyEntries,
    now: number,
  ): Promise<KeyUpdateOutcome> {
    const watched = this.keys.watched;
    const build = new SnapshotBuild(entries, watched, watched);
    await inSlices((d) => this.closed || build.step(d));
    if (this.closed) return lose(undefined);
    this.keys.swap(build.next);
    this.commit(head, now, false);
    let changed = build.next.size;
    const changes = build.changes;
    const removed = (hash: string) => {
      changed++;
      changes?.push({ apiKeySha256: hash, info: undefined });
    };
    await inSlices((d) => this.keys.settle(d, removed));
    return this.applied_(head, changes, build.keys, changed);
  }

  private async applyDelta(
    head: KeyUpdateHead,
    entries: KeyEntries,
    now: number,
  ): Promise<KeyUpdateOutcome> {
    const { maxKeys } = this.o;
    const tooMany = (size: number) =>
      refuse("tooLarge", `the delta would make ${size} keys, more than maxKeys (${maxKeys})`);
    const gap = this.version > 0n && head.version > this.version + 1n;
    const watched = this.keys.watched;
    if (entries.count <= IN_PLACE_KEYS) {
      const staged = new DeltaInPlace(entries, this.keys.current);
      const size = this.keys.size + staged.growth;
      if (staged.growth > 0 && size > maxKeys) return tooMany(size);
      const changes = this.keys.applyInPlace(staged.staged);
      this.commit(head, now, gap);
      const keys = watched
        ? Array.from({ length: entries.count }, (_, i) => entries.status(i))
        : undefined;
      return this.applied_(head, changes, keys, changes.length);
    }
    const build = new DeltaCopyBuild(this.keys.current, entries, watched, watched);
    await inSlices((d) => this.closed || build.step(d));
    if (this.closed) return lose(undefined);
    const size = build.next.size;
    if (size > maxKeys && size > this.keys.size) return tooMany(size);
    this.keys.swap(build.next, build.replaced);
    this.commit(head, now, gap);
    await inSlices((d) => this.keys.settle(d));
    return this.applied_(head, build.changes, build.keys, build.touchedCount);
  }

  /** The list now holds `head`'s update: its version, completeness and age (with the swap). */
  private commit(head: KeyUpdateHead, now: number, gap: boolean): void {
    const following = this.version > 0n; // a delta follows a snapshot
    if (head.snapshot) {
      this.complete = true;
      this.snapshotAt = { version: head.version, keysHash: head.keysHash };
    } else if (gap) this.complete = false;
    if (head.snapshot || following) {
      this.version = head.version;
      if (this.complete) this.refresh(head.sentAtMs, now);
    }
  }

  /** Tells the listeners (when any) and says what was applied. */
  private applied_(
    head: KeyUpdateHead,
    changes: KeyChange[] | undefined,
    keys: KeyStatus[] | undefined,
    changed: number,
  ): KeyUpdateOutcome {
    const update = headUpdate(head, keys);
    if (changes !== undefined) this.keys.notify(changes, update);
    return { applied: true, update, changed, gap: !this.complete, refreshed: false };
  }

  /** The list is as current as an update sent at `sentAtMs`: its age runs from then (or `now`). */
  private refresh(sentAtMs: number, now: number): void {
    this.currentAt = Math.min(now, sentAtMs);
    const maxAge = this.o.maxAgeMs;
    if (maxAge === undefined) return;
    this.keys.usableUntil = this.currentAt + maxAge;
  }
}

/** The update as listeners get it: its head, and its keys when they were gathered. */
function headUpdate(head: KeyUpdateHead, keys?: KeyUpdate["keys"]): KeyUpdate {
  const u = fromBinary(KeyUpdateSchema, head.rest);
  if (keys !== undefined) u.keys = keys;
  return u;
}
