import type { LogLevel } from "../../common/logger.js";
import type { PendingRecord } from "../pending-record.js";
import type { SendOutcome } from "./send-outcome.js";

/** The wait before the first batch is sent again after a 0x10: 100 ms. */
export const NO_SUBSCRIBER_FIRST_MS = 100;
/** The longest wait between two tries while there is no subscriber: 5 s (100 ms doubling). */
export const NO_SUBSCRIBER_MAX_MS = 5000;

const ADVICE =
  "start the ingest (billing-sdk ingest, with a persistent session) before the producers";

interface Episode {
  readonly since: number;
  /** The wait after the next 0x10 of the probe. */
  delayMs: number;
  /** When the next probe may go. */
  resumeAt: number;
  /** The one batch sent to see whether a subscriber is back, until its outcome is known. */
  probe: readonly PendingRecord[] | undefined;
  /**
   * Why the broker refused the last probe (a refusal says nothing of subscribers, so the episode
   * goes on, the next probe at once); undefined once a probe is answered 0x10 again.
   */
  refused: string | undefined;
  /** Records answered 0x10 in this episode (each time). */
  held: number;
}

/**
 * What the send pipeline does while the broker answers PUBACK 0x10 on `<prefix>/report`: the
 * records were not delivered, so they go back in the queue (still pending: `flush`/`close` wait
 * for them, the spool keeps them) and nothing more is sent until a subscriber exists. One batch
 * (the probe) goes after 100 ms, then after waits doubling up to 5 s while the answer stays 0x10
 * (`NO_SUBSCRIBER_FIRST_MS`, `NO_SUBSCRIBER_MAX_MS`); the first batch delivered ends the
 * episode and the window opens again. A probe refused (≥ 0x80) or cut off lets the next one go
 * (the pipeline retries its records as it does any refused or lost record). The hold learns the
 * outcome of every batch (`settled`); the records are the pipeline's. One warning per episode
 * says what to do, one line when it ends; every record answered 0x10 is counted (`held`,
 * `stats().heldNoSubscriber`).
 */
export class NoSubscriberHold {
  /** Records answered 0x10 since the start, each time (one held twice counts twice). */
  held = 0;
  private episode: Episode | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly firstMs: number;
  private readonly maxMs: number;

  constructor(
    private readonly topic: string,
    private readonly log: (
      level: LogLevel,
      message: string,
      fields?: Record<string, unknown>,
    ) => void,
    /** Runs when the wait is over (an unref'd timer): the pipeline sends the probe. */
    private readonly resume: () => void,
    wait: { first: number; max: number } = {
      first: NO_SUBSCRIBER_FIRST_MS,
      max: NO_SUBSCRIBER_MAX_MS,
    },
  ) {
    this.firstMs = wait.first;
    this.maxMs = wait.max;
  }

  /**
   * Whether a batch may go now: always outside an episode; in one, a single probe once the wait
   * is over and nothing is in flight (batches sent before the episode answer first). While the
   * wait is not over, a timer is set to end it: the one set at the 0x10 may have fired already,
   * a little before Date.now() reached its time (they read different clocks), or before the wall
   * clock stepped back (which cuts the wait to at most its length from now).
   */
  mayGo(now: number, inFlight: number): boolean {
    const e = this.episode;
    if (e === undefined) return true;
    if (e.probe !== undefined || inFlight > 0) return false; // their outcome comes first
    e.resumeAt = Math.min(e.resumeAt, now + e.delayMs);
    if (now >= e.resumeAt) return true;
    if (this.timer === undefined) this.arm(e.resumeAt - now);
    return false;
  }

  /** `batch` was sent (during an episode it is the probe). */
  sent(batch: readonly PendingRecord[]): void {
    if (this.episode !== undefined) this.episode.probe = batch;
  }

  /**
   * The outcome of `batch`, a batch sent (each batch comes here once, the probe's included).
   * Delivered: a subscriber exists, the episode ends. 0x10: a new episode starts, or the wait
   * grows after a probe. The probe refused or cut off: the next probe may go.
   */
  settled(batch: readonly PendingRecord[], outcome: SendOutcome, now: number): void {
    const e = this.episode;
    const probe = e !== undefined && batch === e.probe;
    if (probe) e.probe = undefined;
    if (outcome.t === "delivered") this.end();
    else if (outcome.t === "no-subscriber") this.notDelivered(batch.length, now, probe);
    else if (probe && outcome.t === "refused") e.refused = outcome.why;
  }

  /** `records` were answered 0x10: taken and dropped by the broker, not delivered. */
  private notDelivered(records: number, now: number, probe: boolean): void {
    this.held += records;
    let e = this.episode;
    if (e === undefined) {
      e = {
        since: now,
        delayMs: this.firstMs,
        resumeAt: 0,
        probe: undefined,
        refused: undefined,
        held: 0,
      };
      this.episode = e;
      this.log(
        "warn",
        `no subscriber on ${this.topic}: the broker answered PUBACK reason 0x10 (No matching subscribers) and dropped ${records} records. They stay queued (with a spool, in it) and are sent again, after ${this.firstMs} ms and then up to every ${this.maxMs} ms, until a subscriber is there: ${ADVICE}`,
        { records },
      );
    } else if (probe) {
      e.refused = undefined;
      e.delayMs = Math.min(e.delayMs * 2, this.maxMs);
    }
    e.held += records;
    e.resumeAt = Math.max(e.resumeAt, now + e.delayMs);
    this.arm(e.resumeAt - now);
  }

  /** A batch was delivered: a subscriber exists, the episode ends. */
  private end(): void {
    const e = this.episode;
    if (e === undefined) return;
    this.episode = undefined;
    this.stop();
    const seconds = ((Date.now() - e.since) / 1000).toFixed(1);
    this.log(
      "info",
      `${this.topic} has a subscriber again after ${seconds} s: the records held meanwhile are sent`,
      { heldNoSubscriber: e.held },
    );
  }

  /**
   * Why records wait, during an episode (for a `flush`/`close` that times out); undefined
   * outside one, and while the last probe was refused (the refusal is then the cause).
   */
  cause(): string | undefined {
    const e = this.episode;
    if (e === undefined || e.refused !== undefined) return undefined;
    const since = new Date(e.since).toISOString();
    return `no subscriber on ${this.topic} since ${since} (the broker answers PUBACK reason 0x10, No matching subscribers, and drops what it is sent): ${ADVICE}`;
  }

  /** Stops the timer (the episode stays). */
  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private arm(ms: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.resume(); // early, the pipeline's mayGo() sets another
    }, ms);
    this.timer.unref();
  }
}
