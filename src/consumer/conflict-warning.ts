import type { BillingLogger } from "../common/logger.js";

/** How often at most the consumer warns of id conflicts. */
export const CONFLICT_WARNING_MS = 10_000;

/**
 * Warns that records came under an id already handled with other content (never billed, kept
 * as rejected): a producer that reuses ids, or a forgery. Said at once for the first one, then
 * at most once per `everyMs` with the number since the last warning (a flood makes one line per
 * period, not one per record); what is left unsaid at `stop()` is said then.
 */
export class ConflictWarning {
  private unsaid = 0;
  private example = "";
  private lastAt = Number.NEGATIVE_INFINITY;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly log: BillingLogger,
    /** Where the conflicting records went, e.g. "kept in rejected_records". */
    private readonly where: string,
    private readonly everyMs = CONFLICT_WARNING_MS,
  ) {}

  /** `n` conflicts were handled, one of them under `id`. */
  add(n: number, id: string): void {
    if (n <= 0) return;
    this.unsaid += n;
    this.example = id;
    if (this.timer !== undefined) return;
    const wait = this.lastAt + this.everyMs - Date.now();
    if (wait <= 0) this.say();
    else {
      this.timer = setTimeout(() => this.say(), wait);
      this.timer.unref();
    }
  }

  /** Says what is left unsaid, and stops the timer. */
  stop(): void {
    this.say();
  }

  private say(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.unsaid === 0) return;
    this.log(
      "warn",
      `${this.unsaid} record(s) came under an id already handled with other content (e.g. id ${this.example}): not billed, ${this.where}; a producer reuses ids, or someone sends forged records (stats().idConflicts counts them)`,
    );
    this.unsaid = 0;
    this.lastAt = Date.now();
  }
}
