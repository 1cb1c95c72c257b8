import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BillingClient, type BillingClientOptions } from "../../src/index.js";
import { quiet } from "../helpers/fixtures.js";
import { Mosquitto } from "../helpers/mosquitto.js";
import { mosquittoAvailable } from "../helpers/require-broker.js";
import { sleep } from "../helpers/time.js";

// 300,000 records refused by the broker and waiting to retry overflowed the stack
// (Math.min(...delayed)) and blocked the event loop (issue 9.2). A real mosquitto refuses them:
// its ACL lets svc read and publish heartbeats and key requests, not usage (PUBACK 0x87).

const users = { svc: "svc-pass" };
const acl = [
  "user svc",
  "topic read billing/#",
  "topic write billing/keys/request",
  "topic write billing/heartbeat",
  "",
].join("\n");

const gc = () => (globalThis as { gc?: () => void }).gc?.();

/** Whether the caller's stack has a frame in the SDK's own code (src/, not node_modules). */
function calledFromSdk(): boolean {
  // Structured call sites: cheap, and not formatted through the test runner's source maps.
  const prepare = Error.prepareStackTrace;
  Error.prepareStackTrace = (_err, sites) => sites;
  const holder: { stack?: NodeJS.CallSite[] } = {};
  Error.captureStackTrace(holder);
  const sites = holder.stack ?? []; // formatted on first access, with the function above
  Error.prepareStackTrace = prepare;
  return sites.some((site) => {
    const file = site.getFileName() ?? "";
    return file.includes("/src/") && !file.includes("node_modules");
  });
}

/**
 * Times every setTimeout, setInterval and setImmediate callback the SDK schedules while this is
 * installed (the callbacks run as before, on the real timers; others are not timed): `worstMs` is
 * the longest one between `start()` and `stop()`.
 */
function timeTimerCallbacks() {
  const g = globalThis as unknown as Record<string, (...a: unknown[]) => unknown>;
  const names = ["setTimeout", "setInterval", "setImmediate"] as const;
  const real = Object.fromEntries(names.map((n) => [n, g[n]])) as Record<
    (typeof names)[number],
    (...a: unknown[]) => unknown
  >;
  const state = { measuring: false, worstMs: 0, count: 0 };
  for (const name of names) {
    g[name] = (fn: unknown, ...rest: unknown[]) => {
      if (typeof fn !== "function" || !calledFromSdk()) return real[name](fn, ...rest);
      const timed = (...args: unknown[]) => {
        const t0 = performance.now();
        try {
          return (fn as (...a: unknown[]) => unknown)(...args);
        } finally {
          if (state.measuring) {
            state.count++;
            state.worstMs = Math.max(state.worstMs, Math.round(performance.now() - t0));
          }
        }
      };
      return real[name](timed, ...rest);
    };
  }
  return {
    start: () => {
      state.measuring = true;
    },
    stop: () => {
      state.measuring = false;
    },
    restore: () => {
      for (const name of names) g[name] = real[name];
    },
    get worstMs() {
      return state.worstMs;
    },
    get count() {
      return state.count;
    },
  };
}

describe.runIf(mosquittoAvailable())("a real mosquitto refusing every record (MQTT 5)", () => {
  let broker: Mosquitto;
  beforeAll(async () => {
    broker = await Mosquitto.start({
      users,
      acl,
      // Receive maximum 256 (mosquitto's default is 20): the SDK's default window fits.
      extra: ["max_inflight_messages 256"],
    });
  });
  afterAll(async () => {
    await broker?.close();
  });

  it("300,000 records refused (PUBACK 0x87) and waiting to retry: no crash, memory bounded, the retry schedule never blocks the event loop > 50 ms", async () => {
    expect(typeof (globalThis as { gc?: unknown }).gc, "run with --expose-gc").toBe("function");
    // An exception thrown in one of the client's timers or callbacks would end the process:
    // caught here so that the test fails with it instead.
    const uncaught: Error[] = [];
    const onUncaught = (err: Error) => uncaught.push(err);
    process.on("uncaughtException", onUncaught);
    // The retry schedule runs in timer callbacks: time each one (the real timers still run).
    const timers = timeTimerCallbacks();
    const N = 300_000;
    const client = new BillingClient({
      brokerHost: "127.0.0.1",
      brokerPort: broker.plainPort,
      tls: false,
      username: "svc",
      password: users.svc,
      protocolVersion: 5,
      maxQueued: 400_000,
      maxQueuedBytes: 256 * 2 ** 20,
      // Every retry 45–90 s after its refusal. Refusing 300,000 takes 30–60 s on a 2-core box
      // (mqtt.js handles 5,000–11,000 refusals/s), so nearly all of them wait at once, then cycle.
      reconnectBaseMs: 90_000,
      reconnectMaxMs: 90_000,
      heartbeatIntervalMs: 0,
      logger: quiet,
    } as BillingClientOptions);
    try {
      await client.connect(5000);
      expect(client.stats().protocolVersion).toBe(5);
      gc();
      const heapBefore = process.memoryUsage().heapUsed;
      const refused: unknown[] = [];
      for (let i = 0; i < N; i++) {
        client
          .reportUsage({ apiKey: "k", module: "llm", model: "m", usage: i })
          .catch((e: unknown) => refused.push(e));
      }
      await sleep(0);
      expect(refused).toEqual([]);

      // From here on only the client works: refusals, the retry schedule, retries.
      timers.start();
      let maxRetrying = 0;
      // Until every record was refused once and 2,000 were retried and refused again (or an
      // uncaught exception, or 75 s).
      const end = Date.now() + 150_000;
      let lastGc = Date.now();
      while (uncaught.length === 0 && client.stats().failed < N + 2000 && Date.now() < end) {
        maxRetrying = Math.max(maxRetrying, client.stats().retrying);
        // A full collection every 4 s, here (not timed): otherwise V8 marks this large heap
        // incrementally, in slices charged to whatever code runs (measured: 80 ms inside a retry
        // callback that popped 237 records), and the timing would be of the GC, not of the SDK.
        if (Date.now() - lastGc > 4000) {
          gc();
          lastGc = Date.now();
        }
        await sleep(20);
      }
      timers.stop();
      const stats = client.stats();
      expect(
        uncaught.map((e) => `${e.name}: ${e.message}`).slice(0, 3),
        `uncaught exceptions while the retries cycled (${uncaught.length}); first at ${uncaught[0]?.stack?.split("\n")[1]?.trim()}`,
      ).toEqual([]);
      // Far past the ~125,000 at which Math.min(...delayed) overflowed the stack.
      expect(maxRetrying, "records waiting to retry at once").toBeGreaterThanOrEqual(200_000);
      expect(stats.failed, "refusals seen").toBeGreaterThanOrEqual(N + 2000);
      expect(stats).toMatchObject({ published: 0, queued: N });
      expect(
        timers.worstMs,
        `longest SDK timer callback while the retries cycled, ms (of ${timers.count})`,
      ).toBeLessThan(50);
      gc();
      const heapEnd = process.memoryUsage().heapUsed;
      // Memory bounded: what 300,000 small records take (well under 1 KB each).
      expect(Math.round((heapEnd - heapBefore) / N), "heap bytes per waiting record").toBeLessThan(
        1024,
      );
    } finally {
      timers.restore();
      await client.close(0).catch(() => {});
      await sleep(100);
      process.off("uncaughtException", onUncaught);
    }
  }, 200_000);
});
