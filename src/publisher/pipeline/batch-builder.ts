import { framedSize } from "../../protocol/usage-batch.js";
import type { PendingRecord } from "../pending-record.js";
import type { RecordQueue } from "./record-queue.js";
import type { RetrySchedule } from "./retry-schedule.js";

/** Connection losses with a record in flight after which it is sent alone, as a suspect. */
export const SUSPECT_AFTER_LOSSES = 3;

/** The bounds of one message's batch. */
export interface BatchLimits {
  /** The most records in one batch. */
  readonly maxRecords: number;
  /** The most bytes of one batch's payload (a single larger record still goes, alone). */
  readonly maxBytes: number;
}

/**
 * Forms the batches the send pipeline publishes, one message each, from three sources in this
 * order: the parts of batches the broker refused (each sent as it is: see `split`), the retries
 * that are due, then the queue, oldest first. A batch stops at its limits and before a suspect
 * (a record in flight at `SUSPECT_AFTER_LOSSES` losses), which goes alone.
 */
export class BatchBuilder {
  private readonly parts: PendingRecord[][] = [];
  private partRecords = 0;

  constructor(
    private readonly queue: RecordQueue,
    private readonly retries: RetrySchedule,
  ) {}

  /** Records in parts of refused batches waiting to go. */
  get waitingParts(): number {
    return this.partRecords;
  }

  /**
   * A batch the broker refused, split in halves that go next, each as one message: a batch
   * refused because of its size (or of one record) is thus narrowed down in O(log n) messages to
   * the records that go, and the one that is refused alone (which then waits out its delay).
   */
  split(batch: PendingRecord[]): void {
    const half = Math.ceil(batch.length / 2);
    this.parts.push(batch.slice(0, half), batch.slice(half));
    this.partRecords += batch.length;
  }

  /** The record the next batch starts with, left in place. */
  peek(now: number): PendingRecord | undefined {
    return this.parts[0]?.[0] ?? this.retries.peekDue(now) ?? this.queue.peek();
  }

  /**
   * Whether the queue alone makes a full batch (so a lingering pipeline sends it at once).
   */
  queueFull(limits: BatchLimits): boolean {
    return this.queue.length >= limits.maxRecords || this.queue.bytes >= limits.maxBytes;
  }

  /** Takes the next batch (the caller saw `peek` return a record). */
  take(now: number, limits: BatchLimits): PendingRecord[] {
    let part = this.parts.shift();
    if (part !== undefined) {
      // A part made on an earlier connection can be over this one's limits: halved again.
      while (part.length > 1 && !fits(part, limits)) {
        const half = Math.ceil(part.length / 2);
        this.parts.unshift(part.slice(half));
        part = part.slice(0, half);
      }
      this.partRecords -= part.length;
      return part;
    }
    const batch: PendingRecord[] = [];
    let bytes = 0;
    while (batch.length < limits.maxRecords) {
      const next = this.retries.peekDue(now) ?? this.queue.peek();
      if (next === undefined) break;
      const size = framedSize(next.bytes.length);
      if (next.losses >= SUSPECT_AFTER_LOSSES) {
        if (batch.length === 0) batch.push(this.takeNext(now));
        break; // a suspect goes alone
      }
      if (batch.length > 0 && bytes + size > limits.maxBytes) break;
      batch.push(this.takeNext(now));
      bytes += size;
    }
    return batch;
  }

  private takeNext(now: number): PendingRecord {
    return (this.retries.takeDue(now) ?? this.queue.shift()) as PendingRecord;
  }
}

function fits(batch: readonly PendingRecord[], limits: BatchLimits): boolean {
  if (batch.length > limits.maxRecords) return false;
  let bytes = 0;
  for (const r of batch) bytes += framedSize(r.bytes.length);
  return bytes <= limits.maxBytes;
}
