/**
 * Runs the send pipeline's `fill` (what fills the window) on demand, never nested: a publish can
 * call back synchronously (a PUBACK before `publish` returns, a connection that fails at once),
 * and a call from inside `fill` runs it once more after the current round instead.
 */
export class PumpLoop {
  private running = false;
  private again = false;
  private scheduled = false;

  constructor(private readonly fill: () => void) {}

  /** Runs `fill` now (or once more after the round in progress). */
  run(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    try {
      do {
        this.again = false;
        this.fill();
      } while (this.again);
    } finally {
      this.running = false;
    }
  }

  /** Runs `fill` at the end of this turn, once for every call made in the turn. */
  soon(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      this.run();
    });
  }
}
