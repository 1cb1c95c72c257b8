import { PerformanceObserver } from "node:perf_hooks";
import { sleep } from "./time.js";

/**
 * Times pieces of synchronous work (callbacks) by what they cost this process, not by the wall
 * clock alone: on a busy machine a callback can wait for a CPU, or for a garbage collection that
 * other code's allocations made due, in the middle of its run. A piece's cost is the lesser of
 * its wall time and its process CPU time, less the GC pauses that overlap it. Only pieces over
 * 10 ms are kept for the overlap (the others are far below any bound worth testing).
 */
export function workTimer() {
  const slow: Array<{ start: number; end: number; cost: number }> = [];
  const gcs: Array<{ start: number; end: number }> = [];
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries())
      gcs.push({ start: e.startTime, end: e.startTime + e.duration });
  });
  observer.observe({ entryTypes: ["gc"] });
  let measuring = false;
  return {
    start() {
      measuring = true;
    },
    stop() {
      measuring = false;
    },
    /** Runs `fn`, timing it while measuring. */
    time<T>(fn: () => T): T {
      if (!measuring) return fn();
      const t0 = performance.now();
      const c0 = process.cpuUsage();
      try {
        return fn();
      } finally {
        const end = performance.now();
        const cpu = process.cpuUsage(c0);
        const cost = Math.min(end - t0, (cpu.user + cpu.system) / 1000);
        if (cost > 10) slow.push({ start: t0, end, cost });
      }
    },
    /** The most one timed piece cost, in ms (call after `stop`; GC entries arrive async). */
    async worstMs(): Promise<number> {
      await sleep(50);
      observer.disconnect();
      let worst = 0;
      for (const s of slow) {
        let gc = 0;
        for (const g of gcs) gc += Math.max(0, Math.min(s.end, g.end) - Math.max(s.start, g.start));
        worst = Math.max(worst, s.cost - gc);
      }
      return worst;
    },
  };
}
