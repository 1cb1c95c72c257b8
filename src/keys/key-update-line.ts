import { TurnBudget } from "./time-slices.js";

/**
 * The most key updates that may wait behind the one being decided. A genuine backlog is small
 * (a few deltas behind a large snapshot, or what a broker kept for the client while it was away:
 * mosquitto keeps 1,000 by default); past it an update is lost, which asks for a snapshot.
 */
export const MAX_WAITING_UPDATES = 1_000;

/**
 * The line of key-update payloads at the gate: each is decided after those that arrived before
 * it, one at a time. Bounded by bytes (at most `maxBytes` waiting) and by count
 * (`MAX_WAITING_UPDATES`), and paced: however long the line, its decisions hold the event loop
 * at most a few milliseconds per turn (`TurnBudget`), so a backlog that builds up while the
 * worker checks one large payload is not decided in one go when it answers.
 */
export class KeyUpdateLine {
  private tail: Promise<unknown> = Promise.resolve();
  private waitingBytes = 0;
  /** Updates being decided, or waiting to be. */
  private inLine = 0;
  private readonly budget = new TurnBudget();

  constructor(private readonly maxBytes: number) {}

  /** Why a payload of `bytes` cannot join the line (it is lost), or undefined when it can. */
  full(bytes: number): string | undefined {
    if (this.inLine > MAX_WAITING_UPDATES) {
      return `${MAX_WAITING_UPDATES} earlier key updates were waiting to be checked (at most that many may wait)`;
    }
    if (this.waitingBytes + bytes > this.maxBytes) {
      return `${bytes} bytes arrived while ${this.waitingBytes} bytes of earlier key updates were waiting to be checked (at most maxKeyUpdateBytes, ${this.maxBytes}, may wait)`;
    }
    return undefined;
  }

  /**
   * Runs `decide` for a payload of `bytes` once those before it are decided; `queued` tells it
   * whether the payload had to wait (a backlog exists).
   */
  join<T>(bytes: number, decide: (queued: boolean) => Promise<T>): Promise<T> {
    // The first in line is decided at once; those behind it wait, holding their bytes.
    const queued = this.inLine > 0;
    const waits = queued ? bytes : 0;
    this.waitingBytes += waits;
    this.inLine++;
    const run = this.tail.then(async () => {
      await this.budget.take();
      this.waitingBytes -= waits;
      return decide(queued);
    });
    this.tail = run
      .catch(() => {})
      .finally(() => {
        this.inLine--;
      });
    return run;
  }
}
