/**
 * The `lingerMs` wait of the send pipeline: once armed, after `ms` a batch that is not full may
 * go (`over`) and `expired` runs; `reset` starts a new wait. With `ms` 0 it is off.
 */
export class LingerTimer {
  private timer: NodeJS.Timeout | undefined;
  /** The wait is over: a batch that is not full may go now. */
  over = false;

  constructor(
    readonly ms: number,
    private readonly expired: () => void,
  ) {}

  get enabled(): boolean {
    return this.ms > 0;
  }

  /** Starts the wait unless one runs (or lingering is off). */
  arm(): void {
    if (this.ms === 0 || this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.over = true;
      this.expired();
    }, this.ms);
    this.timer.unref();
  }

  /** What lingered went: the next batch that is not full waits again. */
  reset(): void {
    this.over = false;
    this.stop();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
