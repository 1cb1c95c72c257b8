/**
 * Capped exponential backoff with "equal jitter": half fixed, half random, so that many clients
 * restarted together do not reconnect (or retry) in lockstep. `attempt` counts from 0.
 */
export function backoff(attempt: number, baseMs: number, maxMs: number): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  return ceiling / 2 + Math.random() * (ceiling / 2);
}
