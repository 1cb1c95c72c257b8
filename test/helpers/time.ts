// Time and waiting in tests, in one place: a fixed pause (`sleep`) or a condition polled until a
// deadline (`waitUntil`). Both use the timers as they were when the tests loaded, so a test that
// patches the global timers (to time the SDK's callbacks) does not time its own waits.

const realSetTimeout = globalThis.setTimeout;

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => realSetTimeout(resolve, ms));
}

/** Polls `check` every 10 ms until it is true; throws after `timeoutMs`, naming `what`. */
export async function waitUntil(
  check: () => boolean,
  timeoutMs = 10_000,
  what = "condition",
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}
