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
