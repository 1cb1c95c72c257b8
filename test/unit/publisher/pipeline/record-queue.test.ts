import { describe, expect, it } from "vitest";
import type { PendingRecord } from "../../../../src/publisher/pending-record.js";
import { RecordQueue } from "../../../../src/publisher/pipeline/record-queue.js";

describe("RecordQueue", () => {
  const rec = (seq: number): PendingRecord => ({
    seq,
    id: `id${seq}`,
    bytes: Buffer.alloc(0),
    attempts: 0,
    losses: 0,
  });

  it("is FIFO and merges records put back in seq order", () => {
    const q = new RecordQueue();
    for (let i = 0; i < 10_000; i++) q.push(rec(i));
    const taken = Array.from({ length: 5000 }, () => q.shift() as PendingRecord);
    expect(taken.map((r) => r.seq)).toEqual(Array.from({ length: 5000 }, (_, i) => i));
    for (const r of [taken[4], taken[0], taken[2]] as PendingRecord[]) q.putBack(r);
    expect(q.length).toBe(5003);
    expect(q.peek()?.seq).toBe(0);
    const out: number[] = [];
    for (let r = q.shift(); r !== undefined; r = q.shift()) out.push(r.seq);
    expect(out.slice(0, 4)).toEqual([0, 2, 4, 5000]);
    expect(out.length).toBe(5003);
    expect(q.shift()).toBeUndefined();
  });
});
