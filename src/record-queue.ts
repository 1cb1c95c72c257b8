/** One accepted record waiting for the broker's acknowledgement. */
export interface PendingRecord {
  /** Order of acceptance: records go out oldest (lowest) first. */
  readonly seq: number;
  /** The record's UUIDv7, for logs. */
  readonly id: string;
  /** The encoded `UsageRecord`. */
  readonly bytes: Buffer;
  /** Failed publish attempts so far. */
  attempts: number;
}

/**
 * A FIFO of pending records with a cheap `shift` (a moving head over an array, compacted now and
 * then) and `returnToFront`, which puts records that were taken out back in `seq` order.
 */
export class RecordQueue {
  private items: PendingRecord[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(record: PendingRecord): void {
    this.items.push(record);
  }

  /** The record `shift` would return, left in place. */
  peek(): PendingRecord | undefined {
    return this.items[this.head];
  }

  shift(): PendingRecord | undefined {
    if (this.head === this.items.length) return undefined;
    const record = this.items[this.head];
    this.items[this.head] = undefined as unknown as PendingRecord; // let it be collected
    this.head++;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head >= 4096 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return record;
  }

  /**
   * Puts records taken out earlier back, merged in `seq` order with those still queued, so the
   * oldest goes out first again. Used after a disconnect (in-flight records) and for retries.
   */
  returnToFront(records: Iterable<PendingRecord>): void {
    const back = [...records].sort((a, b) => a.seq - b.seq);
    if (back.length === 0) return;
    const rest = this.items.slice(this.head);
    const merged: PendingRecord[] = [];
    let i = 0;
    let j = 0;
    while (i < back.length && j < rest.length) {
      merged.push(
        (back[i] as PendingRecord).seq < (rest[j] as PendingRecord).seq
          ? (back[i++] as PendingRecord)
          : (rest[j++] as PendingRecord),
      );
    }
    while (i < back.length) merged.push(back[i++] as PendingRecord);
    while (j < rest.length) merged.push(rest[j++] as PendingRecord);
    this.items = merged;
    this.head = 0;
  }
}
