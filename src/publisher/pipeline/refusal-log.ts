import type { LogLevel } from "../../common/logger.js";
import type { PendingRecord } from "../pending-record.js";

/** Refusals are logged at most this often (a broker refusing everything refuses thousands/s). */
const REFUSAL_LOG_MS = 10_000;

/**
 * Logs records sent to wait in the retry schedule: one line per `REFUSAL_LOG_MS` at most. Keeps
 * the last reason, which explains a wait until the broker takes a batch again (`taken`).
 */
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

  /** The broker took a batch (delivered, or answered 0x10): the last refusal is not the cause. */
  taken(): void {
    this.lastWhy = undefined;
  }

  /**
   * Why records wait, while the last answer was a refusal: the last reason given, and how many
   * records wait out their delay now (`retrying`; the others may be on their way again).
   */
  cause(retrying: number): string | undefined {
    if (this.lastWhy === undefined) return undefined;
    return `refused records are retried after a growing delay (the last reason: ${this.lastWhy}; ${retrying} waiting now)`;
  }
}
