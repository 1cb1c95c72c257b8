import type { KeyObject } from "node:crypto";
import type { MqttClient } from "mqtt";
import type { LogLevel } from "../../common/logger.js";
import { KeyList } from "../../keys/key-list.js";
import {
  KeyUpdateGate,
  type KeyUpdateGateOptions,
  type KeyUpdateOutcome,
} from "../../keys/key-update-gate.js";
import type { BillingTopics } from "../../protocol/topics.js";
import { keyListRequestPayload } from "../producer-messages.js";

/** Refused updates are logged at most this often (a flood of forgeries must not flood logs). */
const REFUSAL_LOG_MS = 10_000;
/** While a snapshot request is unanswered, another (for a gap, a stale list) waits this long. */
const REQUEST_GAP_MS = 1_000;
/** While the list is incomplete (a delta skipped versions), it asks again after 5, 10, … 60 s. */
const INCOMPLETE_FIRST_MS = 5_000;
const INCOMPLETE_MAX_MS = 60_000;

/** What `KeySync` takes of the client's resolved options. */
export interface KeySyncSettings {
  /** The producer that asks for snapshots (`clientId`). */
  clientId: string;
  keyUpdatePublicKeys: ReadonlyMap<string, KeyObject>;
  insecureAcceptUnsignedKeyUpdates: boolean;
  maxKeys: number;
  maxKeyUpdateBytes: number;
  maxKeyListAgeMs: number | undefined;
}

/**
 * Keeps the API-key list the billing backend pushes: after every (re)connect it subscribes to
 * `<prefix>/keys/update` and then asks for a snapshot on `<prefix>/keys/request`; every payload
 * that arrives goes through the `KeyUpdateGate` (signature, version, limits), which applies it or
 * refuses it. It asks for a snapshot again when a delta skipped versions (and again, backing off,
 * until one arrives), and says when the list went stale. Subscribing once per connection (a new
 * client each time) means key requests never multiply across reconnects.
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
  private lastRefusal = "";
  private staleTimer: NodeJS.Timeout | undefined;
  private incompleteTimer: NodeJS.Timeout | undefined;
  private refusalLogTimer: NodeJS.Timeout | undefined;
  private readonly producer: string;
  private readonly options: KeyUpdateGateOptions;

  constructor(
    private readonly topics: BillingTopics,
    o: KeySyncSettings,
    private readonly log: (level: LogLevel, message: string, fields?: object) => void,
  ) {
    this.producer = o.clientId;
    this.options = {
      publicKeys: o.keyUpdatePublicKeys,
      acceptUnsigned: o.insecureAcceptUnsignedKeyUpdates,
      maxKeys: o.maxKeys,
      maxBytes: o.maxKeyUpdateBytes,
      maxAgeMs: o.maxKeyListAgeMs,
    };
    this.keys = new KeyList(
      (err) => log("error", "a key-list listener threw; the other listeners still ran", { err }),
      () => this.warnIfUnverifiable(), // at the first key decision: not in a reporting-only process
    );
    this.gate = new KeyUpdateGate(this.keys, this.options);
  }

  /** A connection is up: subscribe, then ask for a snapshot. */
  start(client: MqttClient): void {
    this.client = client;
    client.subscribe(this.topics.keysUpdate, { qos: 1 }, (err) => {
      if (err) {
        this.log("error", `subscribing to ${this.topics.keysUpdate} failed: ${err.message}`);
        return;
      }
      this.request(client);
    });
  }

  /** The client is closing: no more timers. */
  stop(): void {
    clearTimeout(this.staleTimer);
    clearTimeout(this.incompleteTimer);
    clearTimeout(this.refusalLogTimer);
    this.incompleteTimer = undefined;
    this.client = undefined;
  }

  /** A message arrived; those on the key-update topic go through the gate. */
  onMessage(topic: string, payload: Buffer): void {
    if (topic !== this.topics.keysUpdate) return;
    const outcome = this.gate.receive(payload);
    if (!outcome.applied) {
      this.refused(outcome);
      return;
    }
    const { update, changes, gap } = outcome;
    if (update.snapshot) this.awaitingSnapshot = false;
    this.log("debug", `key update applied (${update.snapshot ? "snapshot" : "delta"})`, {
      version: String(update.version),
      changed: changes.length,
      known: this.keys.size,
    });
    if (gap && this.incompleteTimer === undefined) {
      this.log(
        "warn",
        `a key-list delta skipped versions (now ${update.version}): an update may be missing; asking for a snapshot until one arrives`,
      );
      this.requestSoon();
      this.askUntilComplete(INCOMPLETE_FIRST_MS);
    } else if (!gap) {
      clearTimeout(this.incompleteTimer);
      this.incompleteTimer = undefined;
    }
    this.watchStaleness();
  }

  /** Said once, when requireApiKey() first decides on a list that can never load. */
  private warnIfUnverifiable(): void {
    if (this.options.publicKeys.size > 0 || this.options.acceptUnsigned) return;
    this.log(
      "warn",
      "requireApiKey() checks keys against the pushed key list, but no keyUpdatePublicKeys are " +
        "configured: every key update is refused and the key list never loads, so " +
        "requireApiKey() answers Unavailable (usage records still go out). Configure " +
        "keyUpdatePublicKeys with the billing backend's Ed25519 public key.",
    );
  }

  /** While the list is incomplete, asks for a snapshot again, backing off. */
  private askUntilComplete(delayMs: number): void {
    this.incompleteTimer = setTimeout(() => {
      if (this.gate.complete) {
        this.incompleteTimer = undefined;
        return;
      }
      this.requestSoon();
      this.askUntilComplete(Math.min(delayMs * 2, INCOMPLETE_MAX_MS));
    }, delayMs);
    this.incompleteTimer.unref();
  }

  private refused(outcome: Extract<KeyUpdateOutcome, { applied: false }>): void {
    const { reason, detail } = outcome;
    if (reason === "duplicate") return; // benign: a snapshot sent again
    this.refusedUnlogged++;
    this.lastRefusal = `${reason}: ${detail}`;
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
    this.log(
      "warn",
      `refused ${this.refusedUnlogged} key update(s) since the last report, e.g. one ${this.lastRefusal}; the key list is unchanged`,
      { refused: { ...this.gate.refused } },
    );
    this.refusedUnlogged = 0;
    this.lastRefusalLog = now;
  }

  /** Says once when the list goes stale, and asks for a snapshot then. */
  private watchStaleness(): void {
    clearTimeout(this.staleTimer);
    const until = this.keys.usableUntil;
    if (until === Number.POSITIVE_INFINITY) return;
    this.staleTimer = setTimeout(
      () => {
        this.log(
          "error",
          `the key list is stale: no fresh signed update within maxKeyListAgeMs (${this.options.maxAgeMs} ms); requireApiKey() answers Unavailable until one arrives`,
        );
        this.requestSoon();
      },
      Math.max(0, until - Date.now() + 1),
    );
    this.staleTimer.unref();
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
