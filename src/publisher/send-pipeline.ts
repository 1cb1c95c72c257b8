import type { LogLevel } from "../common/logger.js";
import type { PendingLedger } from "./pending-ledger.js";
import type { PendingRecord } from "./pending-record.js";
import { RecordQueue } from "./record-queue.js";
import { RetrySchedule } from "./retry-schedule.js";

/**
 * Where the pipeline publishes: one live connection. `send` publishes one encoded record at
 * QoS 1 and calls `done` once, with the PUBACK (no error) or the failure: an error whose numeric
 * `code` is the broker's PUBACK reason code (≥ 0x80), or another error.
 */
export interface PublishLink {
  /** How many publishes may await their PUBACK at once on this connection. */
  readonly window: number;
  /** Whether the connection is still up. */
  isUp(): boolean;
  send(bytes: Buffer, done: (err?: Error | null) => void): void;
  /** Holds this tick's writes back and sends them as one (optional). */
  cork?(): void;
}

/** What the pipeline needs from its owner. */
export interface SendPipelineHooks {
  ledger: PendingLedger;
  /** The delay before a refused record's next attempt (`attempts` ≥ 1). */
  retryDelay(attempts: number): number;
  /** Called for each acknowledged record, before the ledger settles it (the spool forgets it). */
  acknowledged(record: PendingRecord): void;
  log(level: LogLevel, message: string, fields?: Record<string, unknown>): void;
}

/** Connection losses with a record in flight after which it is sent alone, as a suspect. */
const SUSPECT_AFTER_LOSSES = 3;
/**
 * Connections a suspect dropped while alone after which it is held as undeliverable: kept (and
 * pending, so flush and close report it), counted, logged, never retried in this process.
 */
const UNDELIVERABLE_AFTER_SOLO_DROPS = 3;
/** Refusals are logged at most this often (a broker refusing everything refuses thousands/s). */
const REFUSAL_LOG_MS = 10_000;

/**
 * The send pipeline: the queue of ready records, the in-flight window, the isolation of suspect
 * records and the retry schedule. It knows nothing of MQTT: it is given a `PublishLink` when a
 * connection comes up and told when it goes down, so it is tested with a fake link and no broker.
 *
 * - At most `link.window` records await their PUBACK; each PUBACK lets the next one go.
 * - A record the broker refuses (PUBACK ≥ 0x80) waits out its own growing delay in the retry
 *   schedule without holding up the others, and goes again when due.
 * - Records cut off in flight by a lost connection go back in order and are sent again with the
 *   same id. A record can itself be why the broker drops us (mosquitto answers one over its
 *   message_size_limit with a PUBACK code mqtt.js cannot parse): a record in flight at
 *   `SUSPECT_AFTER_LOSSES` losses is next sent alone; if the connection drops while it is alone,
 *   it is the cause and waits in the retry schedule, so it cannot block the others forever.
 *   After `UNDELIVERABLE_AFTER_SOLO_DROPS` such drops it is held apart as undeliverable (the
 *   broker cannot take it: larger than mosquitto's message_size_limit, for example), instead of
 *   dropping the connection (and firing the will) again every backoff period, forever.
 */
export class SendPipeline {
  private readonly queue = new RecordQueue();
  private readonly retries: RetrySchedule;
  private readonly inFlight = new Map<number, PendingRecord>();
  private link: PublishLink | undefined;
  private solo = false;
  private refusedUnlogged = 0;
  /** Inside `pump` (a publish can call back synchronously): no nested pump, one more round. */
  private pumping = false;
  private pumpAgain = false;
  private lastRefusalLog = 0;
  /** Acknowledged records. */
  published = 0;
  /** Failed attempts (refused, or cut off by a lost connection). */
  failed = 0;
  /** Records that dropped the connection each time they were sent alone (see above). */
  readonly undeliverable: PendingRecord[] = [];

  constructor(private readonly hooks: SendPipelineHooks) {
    this.retries = new RetrySchedule(() => this.pump());
  }

  /** Records ready to go (not in flight, not waiting to retry). */
  get queued(): number {
    return this.queue.length;
  }

  /** Records awaiting their PUBACK. */
  get inFlightCount(): number {
    return this.inFlight.size;
  }

  /** Records waiting out a delay after the broker refused them. */
  get retrying(): number {
    return this.retries.size;
  }

  /** Adds an accepted record (records come in increasing seq) and sends what the window allows. */
  enqueue(record: PendingRecord): void {
    this.queue.push(record);
    this.pump();
  }

  /** A connection is up: send through it. */
  attach(link: PublishLink): void {
    this.link = link;
    this.pump();
  }

  /** The connection is gone: what was in flight goes back, to be sent again. */
  detach(): void {
    this.link = undefined;
    for (const record of this.inFlight.values()) {
      this.failed++;
      record.attempts++;
      record.losses++;
      if (this.solo && record.losses >= SUSPECT_AFTER_LOSSES + UNDELIVERABLE_AFTER_SOLO_DROPS) {
        this.undeliverable.push(record);
        this.hooks.log(
          "error",
          `record ${record.id} (${record.bytes.length} bytes) dropped the connection each of the ${UNDELIVERABLE_AFTER_SOLO_DROPS} times it was sent alone: held as undeliverable, not retried (is it larger than the broker's message size limit?)`,
          { undeliverable: this.undeliverable.length },
        );
      } else if (this.solo) {
        this.retryLater(record, "the connection dropped while it was the only record in flight");
      } else {
        this.queue.putBack(record);
      }
    }
    this.solo = false;
    this.inFlight.clear();
  }

  /** Stops the retry timer (records stay where they are). */
  stop(): void {
    this.retries.stop();
  }

  /** Sends what the window allows: the due retries first, then the queue, oldest first. */
  pump(): void {
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.pumpAgain = false;
        this.fillWindow();
      } while (this.pumpAgain);
    } finally {
      this.pumping = false;
    }
  }

  private fillWindow(): void {
    const link = this.link;
    if (link === undefined) return;
    const now = Date.now();
    let corked = false;
    // A publish may fail at once (the connection is going down): stop as soon as it is.
    while (this.inFlight.size < link.window && !this.solo && link === this.link && link.isUp()) {
      const next = this.retries.peekDue(now) ?? this.queue.peek();
      if (next === undefined) break;
      if (next.losses >= SUSPECT_AFTER_LOSSES) {
        // A suspect goes out alone, once the window is empty.
        if (this.inFlight.size > 0) break;
        this.solo = true;
      }
      const record = (this.retries.takeDue(now) ?? this.queue.shift()) as PendingRecord;
      if (!corked) {
        corked = true;
        link.cork?.();
      }
      this.inFlight.set(record.seq, record);
      link.send(record.bytes, (err) => this.settled(link, record, err));
    }
    this.retries.armForLater(now);
  }

  private settled(link: PublishLink, record: PendingRecord, err: Error | null | undefined): void {
    // A callback from a connection already given up on: its record was put back.
    if (link !== this.link || this.inFlight.get(record.seq) !== record) return;
    this.inFlight.delete(record.seq);
    this.solo = false;
    if (!err) {
      record.losses = 0; // the broker answered: the connection survived this record
      this.published++;
      this.hooks.acknowledged(record);
      this.hooks.ledger.settle(record.seq, record.bytes.length);
    } else {
      this.failed++;
      record.attempts++;
      const reason = (err as { code?: unknown }).code;
      if (typeof reason === "number") {
        record.losses = 0; // the broker answered
        // The broker refused this record (PUBACK reason code >= 0x80).
        this.retryLater(record, `PUBACK reason code ${reason}`);
      } else if (link.isUp()) {
        // Refused by mqtt.js itself while the connection is up (e.g. larger than the broker's
        // maximum packet size): a problem of this record, retried later like a refusal.
        this.retryLater(record, err.message);
      } else {
        this.queue.putBack(record);
        return; // the connection is going down; detach() follows
      }
    }
    this.pump();
  }

  private retryLater(record: PendingRecord, why: string): void {
    const delay = this.hooks.retryDelay(record.attempts);
    this.retries.add(record, delay);
    this.refusedUnlogged++;
    const now = Date.now();
    if (now - this.lastRefusalLog >= REFUSAL_LOG_MS) {
      this.hooks.log(
        "warn",
        `${this.refusedUnlogged} record(s) refused since the last report, e.g. ${record.id} (${why}); each is retried after a growing delay`,
        { refused: this.refusedUnlogged, retrying: this.retries.size, attempts: record.attempts },
      );
      this.refusedUnlogged = 0;
      this.lastRefusalLog = now;
    }
  }
}
