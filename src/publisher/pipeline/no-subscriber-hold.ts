import type { LogLevel } from "../../common/logger.js";
import type { PendingRecord } from "../pending-record.js";

/**
 * PUBACK reason code 0x10, "No matching subscribers" (MQTT 5): the broker took the message and
 * dropped it, as nobody subscribes to its topic. mqtt.js reports it as a success.
 */
export const NO_MATCHING_SUBSCRIBERS = 0x10;

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
  /** The one batch sent to see whether a subscriber is back, while it awaits its PUBACK. */
  probe: readonly PendingRecord[] | undefined;
  /** Records answered 0x10 in this episode (each time). */
  held: number;
}

/**
 * What the send pipeline does while the broker answers PUBACK 0x10 on `<prefix>/report`: the
 * records were not delivered, so they go back in the queue (still pending: `flush`/`close` wait
 * for them, the spool keeps them) and nothing more is sent until a subscriber exists. One batch
 * (the probe) goes after 100 ms, then after waits doubling up to 5 s while the answer stays 0x10
 * (`NO_SUBSCRIBER_FIRST_MS`, `NO_SUBSCRIBER_MAX_MS`); the first PUBACK without 0x10 ends the
 * episode and the window opens again. One warning per episode says what to do, one line when it
 * ends; every record answered 0x10 is counted (`held`, `stats().heldNoSubscriber`).
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
   * is over and nothing is in flight (batches sent before the episode answer first).
   */
  mayGo(now: number, inFlight: number): boolean {
    const e = this.episode;
    return e === undefined || (e.probe === undefined && inFlight === 0 && now >= e.resumeAt);
  }

  /** `batch` was sent (during an episode it is the probe). */
  sent(batch: readonly PendingRecord[]): void {
    if (this.episode !== undefined) this.episode.probe = batch;
  }

  /**
   * The broker answered 0x10 for `batch`: taken and dropped, not delivered. Its records go back
   * to the queue (`putBack`: in order, same ids; not a failure of the record), and a new episode
   * starts, or the wait grows after a probe.
   */
  notDelivered(
    batch: readonly PendingRecord[],
    now: number,
    putBack: (record: PendingRecord) => void,
  ): void {
    for (const record of batch) {
      record.losses = 0; // the broker answered
      record.attempts++;
      putBack(record);
    }
    this.held += batch.length;
    let e = this.episode;
    if (e === undefined) {
      e = { since: now, delayMs: this.firstMs, resumeAt: 0, probe: undefined, held: 0 };
      this.episode = e;
      this.log(
        "warn",
        `no subscriber on ${this.topic}: the broker answered PUBACK reason 0x10 (No matching subscribers) and dropped ${batch.length} records. They stay queued (with a spool, in it) and are sent again, after ${this.firstMs} ms and then up to every ${this.maxMs} ms, until a subscriber is there: ${ADVICE}`,
        { records: batch.length },
      );
    } else if (batch === e.probe) {
      e.probe = undefined;
      e.delayMs = Math.min(e.delayMs * 2, this.maxMs);
    }
    e.held += batch.length;
    e.resumeAt = Math.max(e.resumeAt, now + e.delayMs);
    this.arm(e.resumeAt - now);
  }

  /** A batch was delivered (a PUBACK without 0x10): a subscriber exists, the episode ends. */
  delivered(): void {
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

  /** The connection is gone: the probe in flight was put back; the next one may go when due. */
  detached(): void {
    if (this.episode !== undefined) this.episode.probe = undefined;
  }

  /**
   * Why records wait, during an episode (for the warning and for a `flush`/`close` that times
   * out); undefined outside one.
   */
  cause(): string | undefined {
    const e = this.episode;
    if (e === undefined) return undefined;
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
      this.resume();
    }, ms);
    this.timer.unref();
  }
}
