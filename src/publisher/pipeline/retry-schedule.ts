import type { PendingRecord } from "../pending-record.js";
import { MinHeap } from "./min-heap.js";

interface Delayed {
  readonly record: PendingRecord;
  readonly dueAt: number;
}

/**
 * Records the broker refused, each waiting out its own delay. A heap by due time: adding and
 * taking a record cost O(log n), and one timer, armed for the earliest due time, says when to
 * look again. Due records are not moved anywhere in bulk: the pipeline takes them one by one
 * as its window has room, so a schedule of 300,000 records never blocks the event loop.
 */
export class RetrySchedule {
  private readonly heap = new MinHeap<Delayed>((a, b) => a.dueAt < b.dueAt);
  private timer: NodeJS.Timeout | undefined;
  private timerDueAt = Number.POSITIVE_INFINITY;

  /** `onDue` runs (from a timer) when the earliest record becomes due. */
  constructor(private readonly onDue: () => void) {}

  /** Records waiting. */
  get size(): number {
    return this.heap.size;
  }

  add(record: PendingRecord, delayMs: number): void {
    const dueAt = Date.now() + delayMs;
    this.heap.push({ record, dueAt });
    if (dueAt < this.timerDueAt) this.armFor(dueAt);
  }

  /** The earliest record if it is due now, left in place. */
  peekDue(now: number): PendingRecord | undefined {
    const top = this.heap.peek();
    return top !== undefined && top.dueAt <= now ? top.record : undefined;
  }

  /** Takes the earliest record if it is due now. */
  takeDue(now: number): PendingRecord | undefined {
    const top = this.heap.peek();
    if (top === undefined || top.dueAt > now) return undefined;
    this.heap.pop();
    return top.record;
  }

  /**
   * Arms the timer for the earliest record when it is due later than `now` and no earlier timer
   * is set. (A record already due is taken by the pipeline when its window next has room: on a
   * PUBACK or a new connection; a timer for it would only spin.)
   */
  armForLater(now: number): void {
    const top = this.heap.peek();
    if (top !== undefined && top.dueAt > now && top.dueAt < this.timerDueAt) this.armFor(top.dueAt);
  }

  private armFor(dueAt: number): void {
    clearTimeout(this.timer);
    this.timerDueAt = dueAt;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.timerDueAt = Number.POSITIVE_INFINITY;
        this.onDue();
      },
      Math.max(0, dueAt - Date.now()),
    );
    this.timer.unref();
  }

  /** Stops the timer (the records stay). */
  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerDueAt = Number.POSITIVE_INFINITY;
  }
}
