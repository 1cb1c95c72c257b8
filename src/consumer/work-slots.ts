import { backoff } from "../common/backoff.js";
import { withDeadline } from "../common/deadline.js";

/** What `WorkSlots` runs, and what it tells about failures. */
export interface WorkSlotsOptions<J> {
  /** How many jobs run (or wait to run again) at once. */
  slots: number;
  /** How long one run may take; past it, it counts as failed (and its late end is ignored). */
  timeoutMs: number;
  /** First and largest delay before a failed job runs again. */
  retryBaseMs: number;
  retryMaxMs: number;
  /** The next job, made when a slot is free (undefined: nothing to do). */
  next(): J | undefined;
  /**
   * Does the job's work; resolves with what to do once it is done (counting, acknowledging).
   * That is called exactly once per job, for the first run that succeeds.
   */
  run(job: J): Promise<() => void>;
  /** A run failed (threw, rejected or timed out); it runs again after `delayMs`. */
  failed(job: J, err: unknown, attempt: number, delayMs: number): void;
  /** Names a job in the timeout error. */
  describe(job: J): string;
}

interface Attempts {
  /** The job is done: its first successful run was taken; later ends are ignored. */
  done: boolean;
  /** The number of the latest run: only its failure leads to another run. */
  latest: number;
  retry: NodeJS.Timeout | undefined;
}

/**
 * Runs jobs a bounded number at a time. A job that fails keeps its slot and runs again after a
 * growing delay (with jitter), until it succeeds or `stop()` is called: nothing is given up on.
 * So at most `slots` jobs can be stuck, and the others go on meanwhile.
 *
 * A run that times out is not stopped (a store write cannot be taken back): if it succeeds later,
 * before or after the run that replaced it, the first success completes the job and every later
 * end is ignored, so a job is never completed twice and a message never acknowledged before all
 * its parts are done. (An abandoned run may still do its work: an idempotent store makes that
 * harmless; `onRecord` may see such a record twice.)
 */
export class WorkSlots<J> {
  private busy = 0;
  private stopped = false;
  private readonly retries = new Set<NodeJS.Timeout>();
  private idleWaiters: Array<() => void> = [];

  constructor(private readonly o: WorkSlotsOptions<J>) {}

  /** Starts jobs while slots are free. */
  pump(): void {
    while (!this.stopped && this.busy < this.o.slots) {
      const job = this.o.next();
      if (job === undefined) break;
      this.busy++;
      this.attempt(job, { done: false, latest: 0, retry: undefined }, 0);
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
    for (const t of this.retries) clearTimeout(t);
    this.retries.clear();
    for (const w of this.idleWaiters.splice(0)) w();
  }

  private attempt(job: J, state: Attempts, n: number): void {
    state.latest = n;
    const run = Promise.resolve().then(() => this.o.run(job));
    // The late end of a run that timed out still counts if it is the first success.
    run.then(
      (complete) => this.succeeded(state, complete),
      () => {},
    );
    withDeadline(run, this.o.timeoutMs, () => `${this.o.describe(job)}: no answer`).catch(
      (err: unknown) => {
        if (this.stopped || state.done || state.latest !== n) return;
        const delay = backoff(n, this.o.retryBaseMs, this.o.retryMaxMs);
        this.o.failed(job, err, n + 1, delay);
        const timer = setTimeout(() => {
          this.retries.delete(timer);
          state.retry = undefined;
          if (!this.stopped && !state.done) this.attempt(job, state, n + 1);
        }, delay);
        state.retry = timer;
        this.retries.add(timer);
      },
    );
  }

  private succeeded(state: Attempts, complete: () => void): void {
    if (state.done) return;
    state.done = true;
    if (state.retry !== undefined) {
      clearTimeout(state.retry);
      this.retries.delete(state.retry);
      state.retry = undefined;
    }
    this.busy--;
    complete();
    this.pump();
  }
}
