import type { LogLevel } from "../../common/logger.js";
import { shownText } from "../../common/text.js";
import type { KeyList } from "../../keys/key-list.js";
import type { KeyUpdateGate } from "../../keys/key-update-gate.js";
import type { BillingTopics } from "../../protocol/topics.js";

/** What the watch names in its messages. */
export interface KeySyncWatchOptions {
  readonly topics: BillingTopics;
  readonly audience: string;
  readonly maxAgeMs: number | undefined;
  /** The pinned signers, as `"name" sha256:…`. */
  readonly pinned: readonly string[];
  /** How long after connecting a missing snapshot is worth a word. */
  readonly noSnapshotMs: number;
  /** The last refusal, as "reason: detail" ("" when none). */
  readonly lastRefusal: () => string;
}

/** A name or topic as logs show it (the prefix may hold characters a terminal would act on). */
const shown = (text: string) => shownText(text, 256);

const DOCTOR =
  "`billing-sdk doctor` with this service's broker settings shows whether a snapshot arrives";

/**
 * Says once, per episode, why the key list cannot be trusted, and what to check: no snapshot
 * some seconds after connecting (the list never loaded: every call is refused Unavailable),
 * stale (no fresh update within `maxKeyListAgeMs`: Unavailable too; it asks for a snapshot),
 * incomplete (a delta skipped versions or an update was lost, and no snapshot came since).
 */
export class KeySyncWatch {
  private noSnapshotTimer: NodeJS.Timeout | undefined;
  private staleTimer: NodeJS.Timeout | undefined;
  private saidNoSnapshot = false;
  private saidIncomplete = false;
  /** The current stale spell was said (and a snapshot asked for). */
  private saidStale = false;

  constructor(
    private readonly o: KeySyncWatchOptions,
    private readonly keys: KeyList,
    private readonly gate: KeyUpdateGate,
    private readonly log: (level: LogLevel, message: string) => void,
    private readonly askForSnapshot: () => void,
  ) {}

  /** A connection is up: if no snapshot is applied in a while, say so (once). */
  connected(): void {
    if (this.keys.loaded || this.saidNoSnapshot || this.noSnapshotTimer !== undefined) return;
    this.noSnapshotTimer = setTimeout(() => {
      this.noSnapshotTimer = undefined;
      if (this.keys.loaded || this.saidNoSnapshot) return;
      this.saidNoSnapshot = true;
      this.log("error", this.noSnapshotMessage());
    }, this.o.noSnapshotMs);
    this.noSnapshotTimer.unref();
  }

  /** An update was applied: the episodes it ends end, and staleness is watched anew. */
  applied(): void {
    if (this.gate.complete) this.saidIncomplete = false;
    if (this.keys.loaded) {
      clearTimeout(this.noSnapshotTimer);
      this.noSnapshotTimer = undefined;
    }
    this.watchStaleness();
  }

  /** The list is still incomplete when the client asks for a snapshot again: say so (once). */
  stillIncomplete(): void {
    if (this.saidIncomplete) return;
    this.saidIncomplete = true;
    const { topics, maxAgeMs } = this.o;
    const stale =
      maxAgeMs === undefined
        ? ""
        : ", so it goes stale maxKeyListAgeMs after its last refresh and requireApiKey() then answers Unavailable";
    this.log(
      "warn",
      `the key list is still incomplete: a delta skipped versions or an update was lost (the list is at version ${this.gate.version}), and no snapshot has answered the requests on ${shown(topics.keysRequest)} since. A revocation may be missing, and deltas no longer refresh the list${stale}. Is the billing backend answering key-list requests? ${DOCTOR}.`,
    );
  }

  /** The client is closing. */
  stop(): void {
    clearTimeout(this.noSnapshotTimer);
    clearTimeout(this.staleTimer);
    this.noSnapshotTimer = undefined;
  }

  private noSnapshotMessage(): string {
    const { topics, audience, pinned, noSnapshotMs } = this.o;
    const refused = this.o.lastRefusal();
    const seen =
      refused === "" ? "No key update was refused." : `The last refused key update: ${refused}.`;
    return `no key-list snapshot ${Math.round(noSnapshotMs / 1000)} s after connecting: requireApiKey() answers Unavailable until one is applied. Is the billing backend running, answering key-list requests on ${shown(topics.keysRequest)} and publishing signed snapshots on ${shown(topics.keysUpdate)}? Do keyUpdatePublicKeys (pinned: ${pinned.length === 0 ? "none" : pinned.join(", ")}) and keyUpdateAudience (${JSON.stringify(shown(audience))}) match how it signs? ${seen} ${DOCTOR}; \`billing-sdk keys push\` publishes one by hand.`;
  }

  /**
   * Says once per stale spell when the list goes stale, and asks for a snapshot then. A spell
   * ends when the list is usable again: updates applied meanwhile that do not refresh it (deltas
   * after a gap) neither say it again nor ask again.
   */
  private watchStaleness(): void {
    clearTimeout(this.staleTimer);
    const until = this.keys.usableUntil;
    if (until === Number.POSITIVE_INFINITY) return;
    if (Date.now() <= until) this.saidStale = false;
    else if (this.saidStale) return;
    this.staleTimer = setTimeout(
      () => {
        this.saidStale = true;
        this.log(
          "error",
          `the key list is stale: no fresh signed update within maxKeyListAgeMs (${this.o.maxAgeMs} ms); requireApiKey() answers Unavailable until one arrives. Asking for a snapshot: is the billing backend running and re-sending a snapshot on ${shown(this.o.topics.keysUpdate)} well within maxKeyListAgeMs? ${DOCTOR}.`,
        );
        this.askForSnapshot();
      },
      Math.max(0, until - Date.now() + 1),
    );
    this.staleTimer.unref();
  }
}
