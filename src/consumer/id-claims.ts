/** An id whose record is in `onRecord` (or waits to be tried again there), and who waits for it. */
export interface IdClaim<W> {
  readonly id: string;
  /** The digest of the bytes of the record that holds it. */
  readonly digest: string;
  /** The job of the record that holds it (its retries keep it). */
  readonly owner: unknown;
  /** Its owner's `onRecord` calls not settled yet (a call that timed out may still run). */
  running: number;
  /** Copies of the record (same id, same bytes) that wait for its outcome. */
  readonly waiting: W[];
}

/**
 * The ids being handled by `onRecord` now: what the dedupe window does not know yet. A record
 * claims its id before its `onRecord` call, so that another record of that id that arrives
 * meanwhile is decided against the claim instead of being passed to `onRecord` too: with other
 * bytes it is a conflict, with the same bytes it waits for the first one's outcome (a duplicate
 * if it succeeds; if it fails, the claim is let go and the copy is handled on its own, so that
 * its message is never acknowledged on the strength of a call that failed).
 */
export class IdClaims<W> {
  private readonly claims = new Map<string, IdClaim<W>>();

  /** The claim on `id`, if a record holds it. */
  get(id: string): IdClaim<W> | undefined {
    return this.claims.get(id);
  }

  /** Claims `id` for `owner` (a free id). */
  take(id: string, digest: string, owner: unknown): IdClaim<W> {
    const claim: IdClaim<W> = { id, digest, owner, running: 0, waiting: [] };
    this.claims.set(id, claim);
    return claim;
  }

  /**
   * Lets `claim` go, if it still holds its id, and returns those that waited for it (each to be
   * decided now); nothing when the claim was let go before.
   */
  release(claim: IdClaim<W>): W[] {
    if (this.claims.get(claim.id) !== claim) return [];
    this.claims.delete(claim.id);
    return claim.waiting.splice(0);
  }
}
