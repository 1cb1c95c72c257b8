import { withDeadline } from "../common/deadline.js";
import { backoff } from "../publisher/backoff.js";

/** What `WorkSlots` runs, and what it tells about failures. */
export interface WorkSlotsOptions<J> {
  /** How many jobs run (or wait to run again) at once. */
  slots: number;
  /** How long one run may take; past it, it counts as failed. */
  timeoutMs: number;
  /** First and largest delay before a failed job runs again. */
  retryBaseMs: number;
  retryMaxMs: number;
  /** The next job, made when a slot is free (undefined: nothing to do). */
  next(): J | undefined;
  run(job: J): Promise<void>;
  /** A run failed (threw, rejected or timed out); it runs again after `delayMs`. */
  failed(job: J, err: unknown, attempt: number, delayMs: number): void;
  /** Names a job in the timeout error. */
  describe(job: J): string;
}

/**
 * Runs jobs a bounded number at a time. A job that fails keeps its slot and runs again after a
 * growing delay (with jitter), until it succeeds or `stop()` is called: nothing is given up on.
 * So at most `slots` jobs can be stuck, and the others go on meanwhile.
 */
export class WorkSlots<J> {
  private busy = 0;
  private stopped = false;
  private readonly timers = new Set<NodeJS.Timeout>();
  private idleWaiters: Array<() => void> = [];

  constructor(private readonly o: WorkSlotsOptions<J>) {}

  /** Starts jobs while slots are free. */
  pump(): void {
    while (!this.stopped && this.busy < this.o.slots) {
      const job = this.o.next();
      if (job === undefined) break;
      this.busy++;
      this.attempt(job, 0);
    }
    if (this.busy === 0) {
      for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  /** Resolves when no job runs or waits (after the next `pump` that finds nothing to do). */
  idle(): Promise<void> {
    if (this.busy === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** No more runs or retries (a run in progress finishes on its own). */
  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const w of this.idleWaiters.splice(0)) w();
  }

  private attempt(job: J, n: number): void {
    const run = Promise.resolve().then(() => this.o.run(job));
    withDeadline(run, this.o.timeoutMs, () => `${this.o.describe(job)}: no answer`).then(
      () => {
        this.busy--;
        this.pump();
      },
      (err: unknown) => {
        if (this.stopped) return;
        const delay = backoff(n, this.o.retryBaseMs, this.o.retryMaxMs);
        this.o.failed(job, err, n + 1, delay);
        const timer = setTimeout(() => {
          this.timers.delete(timer);
          if (!this.stopped) this.attempt(job, n + 1);
        }, delay);
        this.timers.add(timer);
      },
    );
  }
}
