import type { MqttClient } from "mqtt";
import type { LogLevel } from "../../common/logger.js";
import { shownText } from "../../common/text.js";
import { publicKeyFingerprint } from "../../keys/key-fingerprint.js";
import { KeyList } from "../../keys/key-list.js";
import {
  KeyUpdateGate,
  type KeyUpdateGateOptions,
  type KeyUpdateOutcome,
  type KeyUpdateRefusal,
} from "../../keys/key-update-gate.js";
import type { BillingTopics } from "../../protocol/topics.js";
import { keyListRequestPayload } from "../producer-messages.js";
import type { ResolvedKeySyncOptions } from "./key-sync-options.js";
import { KeySyncWatch } from "./key-sync-watch.js";

/** Refused updates are logged at most this often (a flood of forgeries must not flood logs). */
const REFUSAL_LOG_MS = 10_000;
/** While a snapshot request is unanswered, another (for a gap, a stale list) waits this long. */
const REQUEST_GAP_MS = 1_000;
/** While the list is incomplete (a delta skipped versions), it asks again after 5, 10, … 60 s. */
const INCOMPLETE_FIRST_MS = 5_000;
const INCOMPLETE_MAX_MS = 60_000;

/** What `KeySync` takes: its own resolved options, and who asks under which prefix. */
export type KeySyncSettings = ResolvedKeySyncOptions & {
  /** The producer that asks for snapshots (`clientId`). */
  clientId: string;
  /** The topic prefix: the audience when `keyUpdateAudience` is not set. */
  topicPrefix: string;
};

/** How long KeySync waits before it asks again or speaks up (tests shorten them). */
export interface KeySyncTiming {
  /** After connecting, how long without a snapshot before it says why. Default: 10 s. */
  noSnapshotMs?: number;
  /** After a gap, when it first asks again (then twice as long each time). Default: 5 s. */
  incompleteFirstMs?: number;
}

/**
 * Keeps the API-key list the billing backend pushes: after every (re)connect it subscribes to
 * `<prefix>/keys/update` and then asks for a snapshot on `<prefix>/keys/request`; every payload
 * that arrives goes through the `KeyUpdateGate` (signature, audience, version, limits; a large
 * one off the event loop), which applies it or refuses it, in arrival order. It asks for a
 * snapshot again when a delta skipped versions or an update was lost (and again, backing off,
 * until one arrives), and says once why the list cannot be used (`KeySyncWatch`): no snapshot
 * yet, stale, incomplete. Subscribing once per connection (a new client each time) means key
 * requests never multiply across reconnects.
 */
export class KeySync {
  /** The key list. */
  readonly keys: KeyList;
  /** Decides on each update; its counters are the client's. */
  readonly gate: KeyUpdateGate;
  private client: MqttClient | undefined;
  private lastRequest = Number.NEGATIVE_INFINITY;
  private awaitingSnapshot = false;
  private lastRefusalLog = Number.NEGATIVE_INFINITY;
  private refusedUnlogged = 0;
  private lostUnlogged = 0;
  private lastLostLog = Number.NEGATIVE_INFINITY;
  private lastRefusal = "";
  /** The last refusal since the last report that is worth a warning ("" when none). */
  private warnableRefusal = "";
  private incompleteTimer: NodeJS.Timeout | undefined;
  private refusalLogTimer: NodeJS.Timeout | undefined;
  private readonly producer: string;
  private readonly options: KeyUpdateGateOptions;
  private readonly watch: KeySyncWatch;
  private readonly incompleteFirstMs: number;

  constructor(
    private readonly topics: BillingTopics,
    o: KeySyncSettings,
    private readonly log: (level: LogLevel, message: string, fields?: object) => void,
    timing: KeySyncTiming = {},
  ) {
    this.incompleteFirstMs = timing.incompleteFirstMs ?? INCOMPLETE_FIRST_MS;
    this.producer = o.clientId;
    this.options = {
      publicKeys: o.keyUpdatePublicKeys,
      acceptUnsigned: o.insecureAcceptUnsignedKeyUpdates,
      maxKeys: o.maxKeys,
      maxBytes: o.maxKeyUpdateBytes,
      maxAgeMs: o.maxKeyListAgeMs,
      audience: o.keyUpdateAudience ?? o.topicPrefix,
      acceptUnbound: o.acceptUnboundKeyUpdates,
      log,
    };
    this.keys = new KeyList(
      (err) => log("error", "a key-list listener threw; the other listeners still ran", { err }),
      () => this.warnIfUnverifiable(),
    );
    this.gate = new KeyUpdateGate(this.keys, this.options);
    const pinned = [...o.keyUpdatePublicKeys].map(
      ([name, key]) => `${JSON.stringify(name)} ${publicKeyFingerprint(key)}`,
    );
    this.watch = new KeySyncWatch(
      {
        topics,
        audience: this.options.audience,
        maxAgeMs: o.maxKeyListAgeMs,
        pinned,
        noSnapshotMs: timing.noSnapshotMs ?? 10_000,
        lastRefusal: () => this.lastRefusal,
      },
      this.keys,
      this.gate,
      log,
      () => this.requestSoon(),
    );
    for (const [name, key] of o.keyUpdatePublicKeys) {
      log(
        "info",
        `key updates signed by ${JSON.stringify(name)} are verified with the pinned key ${publicKeyFingerprint(key)}`,
      );
    }
    if (o.keyUpdateAudience === undefined && o.keyUpdatePublicKeys.size > 0) {
      log(
        "warn",
        `keyUpdateAudience is not set: key updates must name the audience ${JSON.stringify(shownText(o.topicPrefix, 128))} (the topic prefix), which deployments often share: with one signing key, an update for staging would apply in production. Set keyUpdateAudience (e.g. "prod") on each deployment's services, and sign its updates for it (billing-sdk keys push --audience).`,
      );
    }
  }

  /** A connection is up: subscribe, then ask for a snapshot. */
  start(client: MqttClient): void {
    this.client = client;
    // Without a way to verify updates the list never loads: warnIfUnverifiable says so to the
    // process that checks keys, and one that only reports usage needs no list and is not told.
    if (!this.unverifiable) this.watch.connected();
    client.subscribe(this.topics.keysUpdate, { qos: 1 }, (err) => {
      if (err) {
        this.log("error", `subscribing to ${this.topics.keysUpdate} failed: ${err.message}`);
        return;
      }
      this.request(client);
    });
  }

  /** The client is closing: no more timers, and the key-update worker ends. */
  stop(): void {
    this.watch.stop();
    clearTimeout(this.incompleteTimer);
    clearTimeout(this.refusalLogTimer);
    this.incompleteTimer = undefined;
    this.client = undefined;
    this.gate.close();
  }

  /** A message arrived; those on the key-update topic go through the gate (in arrival order). */
  onMessage(topic: string, payload: Buffer): void {
    if (topic !== this.topics.keysUpdate) return;
    // The payload is mqtt.js's own copy, read by no one after this: the gate may take it.
    this.gate.receive(payload, Date.now(), true).then(
      (outcome) => this.decided(outcome),
      (err: unknown) => this.log("error", "checking a key update failed", { err }),
    );
  }

  private decided(outcome: KeyUpdateOutcome): void {
    if (!outcome.applied) {
      if (outcome.reason !== undefined) this.refused(outcome.reason, outcome.detail);
      else if (outcome.lost !== undefined) this.lost(outcome.lost);
      return;
    }
    const { update, changed, gap } = outcome;
    if (update.snapshot) this.awaitingSnapshot = false;
    this.log(
      "debug",
      `key update ${outcome.refreshed ? "re-sent: the list is current again" : "applied"} (${update.snapshot ? "snapshot" : "delta"})`,
      { version: String(update.version), changed, known: this.keys.size },
    );
    if (gap && this.incompleteTimer === undefined) {
      this.log(
        "warn",
        `a key-list delta skipped versions (now ${update.version}): an update may be missing; asking for a snapshot until one arrives`,
      );
      this.askUntilComplete();
    } else if (!gap) {
      clearTimeout(this.incompleteTimer);
      this.incompleteTimer = undefined;
    }
    this.watch.applied();
  }

  /**
   * An update was lost before it was checked: the list may miss it, so ask for a snapshot. Said
   * at most once per 10 s (a flood loses many).
   */
  private lost(why: string): void {
    this.lostUnlogged++;
    const now = Date.now();
    if (now - this.lastLostLog >= REFUSAL_LOG_MS) {
      this.log(
        "warn",
        `${this.lostUnlogged} key update(s) lost before they were checked since the last report, e.g. one because ${why}; asking for a snapshot`,
      );
      this.lostUnlogged = 0;
      this.lastLostLog = now;
    }
    if (this.incompleteTimer === undefined) this.askUntilComplete();
  }

  /** While the list is incomplete, asks for a snapshot now and again, backing off. */
  private askUntilComplete(delayMs = this.incompleteFirstMs, first = true): void {
    if (first) this.requestSoon();
    this.incompleteTimer = setTimeout(() => {
      if (this.gate.complete) {
        this.incompleteTimer = undefined;
        return;
      }
      this.watch.stillIncomplete();
      this.requestSoon();
      this.askUntilComplete(Math.min(delayMs * 2, INCOMPLETE_MAX_MS), false);
    }, delayMs);
    this.incompleteTimer.unref();
  }

  /** No public key is configured and unsigned updates are refused: no update can apply. */
  private get unverifiable(): boolean {
    return this.options.publicKeys.size === 0 && !this.options.acceptUnsigned;
  }

  /** Said once, when requireApiKey() first decides on a list that can never load. */
  private warnIfUnverifiable(): void {
    if (!this.unverifiable) return;
    this.log(
      "warn",
      "requireApiKey() checks keys against the pushed key list, but no keyUpdatePublicKeys are " +
        "configured: every key update is refused and the key list never loads, so " +
        "requireApiKey() answers Unavailable (usage records still go out). Configure " +
        "keyUpdatePublicKeys with the billing backend's Ed25519 public key.",
    );
  }

  /**
   * Counted (by the gate) and reported at most once per 10 s. At warn, unless every refusal since
   * the last report is one a process without keys expects (`unverifiable`: an update it cannot
   * verify, `missingSignature` or `unknownSigner`): those are said at debug only, or a process
   * that only reports usage would warn each time the backend pushes an update.
   */
  private refused(reason: KeyUpdateRefusal, detail: string): void {
    if (reason === "duplicate") return; // benign: a snapshot sent again
    this.refusedUnlogged++;
    this.lastRefusal = `${reason}: ${detail}`;
    const expected =
      this.unverifiable && (reason === "missingSignature" || reason === "unknownSigner");
    if (!expected) this.warnableRefusal = this.lastRefusal;
    const now = Date.now();
    if (now - this.lastRefusalLog >= REFUSAL_LOG_MS) {
      this.logRefusals(now);
    } else if (this.refusalLogTimer === undefined) {
      // What a flood leaves unsaid is said at the end of the quiet period, not forgotten.
      this.refusalLogTimer = setTimeout(
        () => {
          this.refusalLogTimer = undefined;
          if (this.refusedUnlogged > 0) this.logRefusals(Date.now());
        },
        this.lastRefusalLog + REFUSAL_LOG_MS - now,
      );
      this.refusalLogTimer.unref();
    }
  }

  private logRefusals(now: number): void {
    const warnable = this.warnableRefusal;
    this.log(
      warnable === "" ? "debug" : "warn",
      `refused ${this.refusedUnlogged} key update(s) since the last report, e.g. one ${warnable === "" ? `${this.lastRefusal} (expected here: with no public key configured, no key update can be verified)` : warnable}; the key list is unchanged`,
      { refused: { ...this.gate.refused } },
    );
    this.refusedUnlogged = 0;
    this.warnableRefusal = "";
    this.lastRefusalLog = now;
  }

  private requestSoon(): void {
    const client = this.client;
    if (client === undefined || !client.connected) return; // the next connection asks anyway
    if (this.awaitingSnapshot && Date.now() - this.lastRequest < REQUEST_GAP_MS) return;
    this.request(client);
  }

  private request(client: MqttClient): void {
    this.lastRequest = Date.now();
    this.awaitingSnapshot = true;
    client.publish(
      this.topics.keysRequest,
      keyListRequestPayload(this.producer),
      { qos: 1 },
      (e) => {
        if (e) this.log("warn", `key-list request failed: ${e.message}`);
      },
    );
  }
}
