import type { LogLevel } from "../../common/logger.js";
import type { PendingRecord } from "../pending-record.js";

/** Refusals are logged at most this often (a broker refusing everything refuses thousands/s). */
const REFUSAL_LOG_MS = 10_000;

/** Logs records sent to wait in the retry schedule: one line per `REFUSAL_LOG_MS` at most. */
export class RefusalLog {
  private unlogged = 0;
  private last = 0;
  private lastWhy: string | undefined;

  constructor(
    private readonly log: (
      level: LogLevel,
      message: string,
      fields?: Record<string, unknown>,
    ) => void,
  ) {}

  /** `record` waits out its delay because of `why`; `retrying` records wait in all. */
  refused(record: PendingRecord, why: string, retrying: number): void {
    this.lastWhy = why;
    this.unlogged++;
    const now = Date.now();
    if (now - this.last < REFUSAL_LOG_MS) return;
    this.log(
      "warn",
      `${this.unlogged} record(s) refused since the last report, e.g. ${record.id} (${why}); each is retried after a growing delay`,
      { refused: this.unlogged, retrying, attempts: record.attempts },
    );
    this.unlogged = 0;
    this.last = now;
  }

  /** Why `retrying` records wait (the last reason given), or undefined when none does. */
  cause(retrying: number): string | undefined {
    if (retrying === 0 || this.lastWhy === undefined) return undefined;
    return `${retrying} record(s) wait to be retried after a growing delay (the last reason: ${this.lastWhy})`;
  }
}
