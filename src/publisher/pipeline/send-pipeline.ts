import { framedSize } from "../../protocol/usage-batch.js";
import type { PendingRecord } from "../pending-record.js";
import { BatchBuilder, type BatchLimits, SUSPECT_AFTER_LOSSES } from "./batch-builder.js";
import { DropCap } from "./drop-cap.js";
import { HELD_RETRY_MS, HeldRecords, UNDELIVERABLE_AFTER_SOLO_DROPS } from "./held-records.js";
import { LingerTimer } from "./linger-timer.js";
import { NoSubscriberHold } from "./no-subscriber-hold.js";
import type { PublishLink, SendPipelineHooks } from "./publish-link.js";
import { PumpLoop } from "./pump-loop.js";
import { RecordQueue } from "./record-queue.js";
import { RefusalLog } from "./refusal-log.js";
import { RetrySchedule } from "./retry-schedule.js";
import { type SendOutcome, sendOutcome } from "./send-outcome.js";

export type { PublishLink, SendPipelineHooks } from "./publish-link.js";

/**
 * The send pipeline: queue, batches in flight, suspect isolation, retries. It knows nothing of
 * MQTT (it is given a `PublishLink` while a connection is up), so it is tested without a broker.
 *
 * - What is ready when the window has room goes together, one message per batch (`BatchBuilder`,
 *   up to `maxBatchRecords` and `maxBatchBytes`), at the end of the turn; `lingerMs` lets a batch
 *   that is not full wait. One PUBACK acknowledges its batch; a refused batch (≥ 0x80) is split
 *   in halves; a record refused alone waits out its own delay in the retry schedule.
 * - Records cut off by a lost connection go back in order, same ids. A batch of several cut off
 *   halves the batch bytes for a while (`DropCap`: the broker may drop batches over a limit it
 *   does not announce); a record cut off alone counts a loss, is sent alone at
 *   `SUSPECT_AFTER_LOSSES`, and after `UNDELIVERABLE_AFTER_SOLO_DROPS` drops alone is held apart
 *   (`HeldRecords`), as is a record larger than the link's `maxBatchBytes`.
 * - A batch answered PUBACK 0x10 (no subscriber: the broker dropped it) goes back; one batch at
 *   a time is then tried until a subscriber exists (`NoSubscriberHold`).
 */
export class SendPipeline {
  private readonly queue = new RecordQueue();
  private readonly retries: RetrySchedule;
  private readonly batches: BatchBuilder;
  private readonly inFlight = new Set<PendingRecord[]>();
  private readonly dropCap = new DropCap();
  private readonly refusals: RefusalLog;
  private inFlightRecords = 0;
  private link: PublishLink | undefined;
  private solo = false;
  private readonly pumpLoop = new PumpLoop(() => this.fillWindow());
  private readonly maxBatchRecords: number;
  private readonly maxBatchBytes: number;
  /** With `lingerMs`: the wait of the oldest record for a fuller batch. */
  private readonly linger: LingerTimer;
  /** Acknowledged records. */
  published = 0;
  /** Messages acknowledged (each carried a batch of one or more records). */
  messages = 0;
  /** Failed attempts, per record (refused, or cut off by a lost connection). */
  failed = 0;
  private readonly held: HeldRecords;
  /** Records answered PUBACK 0x10 wait here for a subscriber (`held`, `cause()`). */
  readonly noSubscriber: NoSubscriberHold;

  constructor(private readonly hooks: SendPipelineHooks) {
    this.retries = new RetrySchedule(() => this.pump());
    this.refusals = new RefusalLog(hooks.log);
    this.held = new HeldRecords(hooks.log, hooks.heldRetryMs ?? HELD_RETRY_MS);
    this.batches = new BatchBuilder(this.queue, this.retries);
    this.maxBatchRecords = hooks.maxBatchRecords ?? 500;
    this.maxBatchBytes = hooks.maxBatchBytes ?? 256 * 1024;
    this.linger = new LingerTimer(hooks.lingerMs ?? 0, () => this.pump());
    this.noSubscriber = new NoSubscriberHold(
      hooks.topic ?? "the report topic",
      hooks.log,
      () => this.pump(),
      hooks.noSubscriberMs,
    );
  }

  /** Records held as undeliverable (see above). */
  get undeliverable(): readonly PendingRecord[] {
    return this.held.records;
  }

  /** Records ready to go (not in flight, not waiting to retry). */
  get queued(): number {
    return this.queue.length + this.batches.waitingParts;
  }

  /** Records awaiting their PUBACK. */
  get inFlightCount(): number {
    return this.inFlightRecords;
  }

  /** Records waiting out a delay after the broker refused them. */
  get retrying(): number {
    return this.retries.size;
  }

  /**
   * Why records wait, when known (for a `flush`/`close` that times out): the broker's last answer,
   * a refusal (records wait to be retried) or no subscriber (PUBACK 0x10).
   */
  cause(): string | undefined {
    const why = [this.refusals.cause(this.retries.size), this.noSubscriber.cause()];
    return why.filter((w) => w !== undefined).join("; ") || undefined;
  }

  /**
   * Adds an accepted record (records come in increasing seq); what the window allows is sent at
   * the end of this turn, together with the records added in the same turn.
   */
  enqueue(record: PendingRecord): void {
    this.queue.push(record);
    this.linger.arm();
    this.pumpLoop.soon();
  }

  /**
   * Sends what waits for a fuller batch (`lingerMs`) now. Call it after `ledger.flush()`: the
   * records that flush waits for never linger while it is pending (see `mayGo`).
   */
  sendLingering(): void {
    if (this.linger.enabled) this.pump();
  }

  /** A connection is up: send through it. */
  attach(link: PublishLink): void {
    this.link = link;
    this.pump();
  }

  /** The connection is gone: what was in flight goes back, to be sent again. */
  detach(): void {
    this.link = undefined;
    const now = Date.now();
    for (const batch of this.inFlight) {
      this.noSubscriber.settled(batch, { t: "cut-off" }, now);
      this.cutOff(batch);
    }
    this.solo = false;
    this.inFlight.clear();
    this.inFlightRecords = 0;
  }

  /** Stops the retry and linger timers (records stay where they are). */
  stop(): void {
    this.retries.stop();
    this.held.stop();
    this.linger.stop();
    this.noSubscriber.stop();
  }

  /** Sends what the window allows: parts of refused batches, due retries, then the queue. */
  pump(): void {
    this.pumpLoop.run();
  }

  private fillWindow(): void {
    const link = this.link;
    if (link === undefined) return;
    const now = Date.now();
    const limits: BatchLimits = {
      maxRecords: this.maxBatchRecords,
      maxBytes: Math.min(this.maxBatchBytes, link.maxBatchBytes ?? Infinity, this.dropCap.bytes),
    };
    let corked = false;
    // A publish may fail at once (the connection is going down): stop as soon as it is.
    while (this.inFlight.size < link.window && !this.solo && link === this.link && link.isUp()) {
      if (!this.noSubscriber.mayGo(now, this.inFlight.size)) break;
      const next = this.batches.peek(now);
      if (next === undefined) break;
      const linkMax = link.maxBatchBytes ?? Infinity;
      if (framedSize(next.bytes.length) > linkMax) {
        // Queued before this connection's limits were known (the first CONNACK), or stored by
        // an earlier run: the broker would drop the connection for it, never take it.
        this.held.oversized(this.batches.take(now, { maxRecords: 1, maxBytes: linkMax }), linkMax);
        continue;
      }
      if (!this.mayGo(next, now, limits)) break;
      if (next.losses >= SUSPECT_AFTER_LOSSES) {
        // A suspect goes out alone, once the window is empty.
        if (this.inFlight.size > 0) break;
        this.solo = true;
      }
      const batch = this.batches.take(now, limits);
      if (!corked) link.cork?.();
      corked = true;
      this.inFlight.add(batch);
      this.inFlightRecords += batch.length;
      this.noSubscriber.sent(batch);
      link.send(batch, (err) => this.settled(link, batch, err));
    }
    if (this.queue.length === 0) this.linger.reset();
    this.retries.armForLater(now);
  }

  /**
   * With `lingerMs`, a batch of queued records only that is not full waits (see `enqueue`),
   * unless a pending `flush()`/`close()` waits for its first record (also one that reaches the
   * queue after the call: with a spool, a record is queued once stored, a turn later), or that
   * record was sent before (put back after a lost connection): a record never lingers twice.
   */
  private mayGo(next: PendingRecord, now: number, limits: BatchLimits): boolean {
    if (!this.linger.enabled || this.linger.over || this.batches.queueFull(limits)) return true;
    if (next !== this.queue.peek() || this.retries.peekDue(now) !== undefined) return true;
    if (next.attempts > 0 || this.hooks.ledger.awaited(next.seq)) return true;
    this.linger.arm();
    return false;
  }

  private settled(link: PublishLink, batch: PendingRecord[], err: Error | null | undefined): void {
    // A callback from a connection already given up on: its records were put back.
    if (link !== this.link || !this.inFlight.delete(batch)) return;
    this.inFlightRecords -= batch.length;
    this.solo = false;
    const outcome = sendOutcome(err, link.isUp());
    this.noSubscriber.settled(batch, outcome, Date.now()); // it learns every outcome
    if (outcome.t === "delivered") this.delivered(link, batch);
    else if (outcome.t === "no-subscriber") {
      for (const record of batch) record.losses = 0; // the broker answered: taken, dropped
      this.refusals.taken();
      this.requeue(batch, false); // not a failure of the records: nobody subscribes
    } else if (outcome.t === "refused") this.refused(batch, outcome);
    else {
      this.requeue(batch, true);
      return; // the connection is going down; detach() follows
    }
    this.pump();
  }

  private delivered(link: PublishLink, batch: PendingRecord[]): void {
    this.refusals.taken();
    this.messages++;
    this.dropCap.acknowledged(Math.min(this.maxBatchBytes, link.maxBatchBytes ?? Infinity));
    this.published += batch.length;
    for (const record of batch) {
      record.losses = 0; // the broker answered: the connection survived this record
      this.hooks.acknowledged(record);
      this.hooks.ledger.settle(record.seq, record.bytes.length);
    }
  }

  /**
   * The broker refused `batch`, or mqtt.js did while the connection is up: a problem of this
   * batch. Its halves go apart (not counted as failures); a record refused alone, or refused for
   * its topic, waits out its delay.
   */
  private refused(batch: PendingRecord[], outcome: SendOutcome & { t: "refused" }): void {
    for (const record of batch) record.losses = 0; // the broker answered
    if (batch.length > 1 && !outcome.topic) this.batches.split(batch);
    else {
      this.failed += batch.length;
      for (const record of batch) {
        record.attempts++;
        this.retryLater(record, outcome.why);
      }
    }
  }

  /**
   * A batch cut off by a lost connection (each record counts in `failed`). One of several records
   * goes back in order and halves the batch bytes for now (see `DropCap`): it may be why the
   * broker dropped us. Only a record cut off alone moves toward suspect.
   */
  private cutOff(batch: PendingRecord[]): void {
    if (batch.length === 1) {
      this.lost(batch[0] as PendingRecord);
      return;
    }
    this.dropCap.cutOff(batch);
    this.requeue(batch, true);
  }

  /** Puts `batch` back in order, to go again (`failed`: count each record in `failed`). */
  private requeue(batch: PendingRecord[], failed: boolean): void {
    if (failed) this.failed += batch.length;
    for (const record of batch) {
      record.attempts++;
      this.queue.putBack(record);
    }
  }

  private lost(record: PendingRecord): void {
    this.failed++;
    record.attempts++;
    record.losses++;
    if (this.solo && record.losses >= SUSPECT_AFTER_LOSSES + UNDELIVERABLE_AFTER_SOLO_DROPS) {
      this.held.dropped(record, UNDELIVERABLE_AFTER_SOLO_DROPS, (r) => {
        r.losses--; // one more drop alone holds it again
        this.queue.putBack(r);
        this.pump();
      });
    } else if (this.solo) {
      this.retryLater(record, "the connection dropped while it was the only record in flight");
    } else {
      this.queue.putBack(record);
    }
  }

  private retryLater(record: PendingRecord, why: string): void {
    this.retries.add(record, this.hooks.retryDelay(record.attempts));
    this.refusals.refused(record, why, this.retries.size);
  }
}
