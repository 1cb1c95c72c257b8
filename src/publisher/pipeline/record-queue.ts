import type { PendingRecord } from "../pending-record.js";
import { MinHeap } from "./min-heap.js";

/**
 * The records ready to be published, oldest (lowest seq) first: new records in a FIFO (a moving
 * head over an array, compacted now and then), and records put back after a lost connection in a
 * heap by seq. `shift` takes the older of the two heads, so every operation is O(1) or O(log n).
 */
export class RecordQueue {
  private items: PendingRecord[] = [];
  private head = 0;
  private readonly returned = new MinHeap<PendingRecord>((a, b) => a.seq < b.seq);
  private byteCount = 0;

  get length(): number {
    return this.items.length - this.head + this.returned.size;
  }

  /** The encoded bytes of the records queued (without their framing in a batch). */
  get bytes(): number {
    return this.byteCount;
  }

  /** Adds a new record; records are pushed in increasing seq. */
  push(record: PendingRecord): void {
    this.items.push(record);
    this.byteCount += record.bytes.length;
  }

  /** Puts back records taken out earlier (their order among the others is restored by seq). */
  putBack(record: PendingRecord): void {
    this.returned.push(record);
    this.byteCount += record.bytes.length;
  }

  /** The record `shift` would return, left in place. */
  peek(): PendingRecord | undefined {
    const fresh = this.items[this.head];
    const back = this.returned.peek();
    if (back === undefined) return fresh;
    return fresh === undefined || back.seq < fresh.seq ? back : fresh;
  }

  shift(): PendingRecord | undefined {
    const next = this.peek();
    if (next === undefined) return undefined;
    this.byteCount -= next.bytes.length;
    if (next === this.returned.peek()) return this.returned.pop();
    this.items[this.head] = undefined as unknown as PendingRecord; // let it be collected
    this.head++;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head >= 4096 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return next;
  }
}
