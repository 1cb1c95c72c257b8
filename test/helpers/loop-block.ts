// How long the event loop was held at most while something ran: the maximum of
// monitorEventLoopDelay (perf_hooks, GC pauses included) and of a setInterval(1 ms) probe (the
// longest gap between two of its ticks, less its period).

import { monitorEventLoopDelay, performance } from "node:perf_hooks";

export interface LoopBlock {
  /** The longest event-loop block, ms: the larger of the two measures. */
  maxBlockMs: number;
  /** monitorEventLoopDelay's maximum, ms. */
  histogramMaxMs: number;
  /** The probe's longest gap less its period, ms. */
  probeMaxMs: number;
}

/** Watches the event loop from now until `stop()`. */
export function watchLoop(resolutionMs = 2): { stop: () => LoopBlock } {
  const histogram = monitorEventLoopDelay({ resolution: resolutionMs });
  histogram.enable();
  let last = performance.now();
  let gap = 0;
  const probe = setInterval(() => {
    const now = performance.now();
    gap = Math.max(gap, now - last - 1);
    last = now;
  }, 1);
  return {
    stop() {
      clearInterval(probe);
      gap = Math.max(gap, performance.now() - last - 1);
      histogram.disable();
      const histogramMaxMs = histogram.max / 1e6;
      const probeMaxMs = Math.max(0, gap);
      return { maxBlockMs: Math.max(histogramMaxMs, probeMaxMs), histogramMaxMs, probeMaxMs };
    },
  };
}

/** Runs `work` and says how long it took and how long it held the event loop at most. */
export async function measureLoopBlock<T>(
  work: () => Promise<T>,
): Promise<{ result: T; ms: number } & LoopBlock> {
  await new Promise((r) => setTimeout(r, 20)); // the probe settles
  const watch = watchLoop();
  const t0 = performance.now();
  const result = await work();
  const ms = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 20)); // what the work left behind (a GC) counts too
  return { result, ms, ...watch.stop() };
}
