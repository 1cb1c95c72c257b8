import { performance } from "node:perf_hooks";
import { setImmediate as nextTurn } from "node:timers/promises";

/**
 * A piece of work done in steps: `step(deadline)` works until `performance.now()` passes
 * `deadline` (checking now and then) and returns true once everything is done.
 */
export type Step = (deadline: number) => boolean;

/** How long one slice of a large key-list update may hold the event loop, in ms. */
export const SLICE_MS = 5;

/** How many items a step handles between two looks at the clock. */
export const CLOCK_EVERY = 64;

/** Whether a step should stop before item `i`: every `CLOCK_EVERY` items, once past `deadline`. */
export function pastDeadline(i: number, deadline: number): boolean {
  return i % CLOCK_EVERY === 0 && performance.now() > deadline;
}

/**
 * Runs `step` to its end in slices of `sliceMs`, yielding to the event loop (`setImmediate`)
 * between them, so that calls, timers and I/O go on meanwhile.
 */
export async function inSlices(step: Step, sliceMs = SLICE_MS): Promise<void> {
  while (!step(performance.now() + sliceMs)) await nextTurn();
}

/** Runs `step` to its end without yielding. */
export function atOnce(step: Step): void {
  step(Number.POSITIVE_INFINITY);
}

/**
 * Paces many small pieces of work (one decision each) so that together they hold the event loop
 * at most about `budgetMs` per turn: `take()` resolves at once while the current turn's budget
 * lasts, and on a later turn (`setImmediate`) once it is spent. A turn's budget starts at its
 * first `take()` and ends with the turn.
 */
export class TurnBudget {
  /** When the current turn's budget runs out (`performance.now()`); undefined: a new turn. */
  private ends: number | undefined;
  private turn = 0;

  constructor(private readonly budgetMs = SLICE_MS) {}

  /** Resolves when the next piece of work may run. */
  async take(): Promise<void> {
    if (this.ends !== undefined && performance.now() >= this.ends) await nextTurn();
    if (this.ends === undefined || performance.now() >= this.ends) this.start();
  }

  private start(): void {
    this.ends = performance.now() + this.budgetMs;
    const turn = ++this.turn;
    // Runs once the work of this turn (and its promise callbacks) is done: the turn is over.
    setImmediate(() => {
      if (this.turn === turn) this.ends = undefined;
    });
  }
}
