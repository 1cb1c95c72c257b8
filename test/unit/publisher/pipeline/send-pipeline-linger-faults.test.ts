import { describe, expect, it } from "vitest";
import type { PendingRecord } from "../../../../src/publisher/pending-record.js";
import { DropCap } from "../../../../src/publisher/pipeline/drop-cap.js";
import { PendingLedger } from "../../../../src/publisher/pipeline/pending-ledger.js";
import {
  type PublishLink,
  SendPipeline,
} from "../../../../src/publisher/pipeline/send-pipeline.js";
import { sleep } from "../../../helpers/time.js";

// The send pipeline under faults, with a fake link (no broker): lingerMs with flush and lost
// connections, records over a connection's size limit, batches cut off by a lost connection.

type Done = (err?: Error | null) => void;
type Sent = { seqs: number[]; done: Done };

function setup(opts: { maxBatchRecords?: number; maxBatchBytes?: number; lingerMs?: number }) {
  const ledger = new PendingLedger(1e9, 1e12);
  const logs: string[] = [];
  const pipeline = new SendPipeline({
    ledger,
    retryDelay: () => 5,
    acknowledged: () => {},
    log: (_level, message) => logs.push(message),
    ...opts,
  });
  let seq = 0;
  const make = (size: number): PendingRecord => {
    const s = seq++;
    return { seq: s, id: `${s}`, bytes: Buffer.alloc(size), attempts: 0, losses: 0 };
  };
  const add = (n: number, size = 8) => {
    for (let i = 0; i < n; i++) {
      const r = make(size);
      ledger.add(r.seq, size);
      pipeline.enqueue(r);
    }
  };
  const sent: Sent[] = [];
  const link = (
    window: number,
    answer?: (s: Sent) => void,
    extra: Partial<PublishLink> = {},
  ): PublishLink => ({
    window,
    isUp: () => true,
    send: (records, done) => {
      const s = { seqs: records.map((r) => r.seq), done };
      sent.push(s);
      answer?.(s);
    },
    ...extra,
  });
  return { ledger, pipeline, add, make, sent, link, logs };
}

describe("SendPipeline: lingerMs with flush and lost connections", () => {
  it("records flush sent, put back by a lost connection, go at once on the next one", async () => {
    const { pipeline, add, sent, link, ledger } = setup({ lingerMs: 20_000 });
    pipeline.attach(link(10)); // never answers: the batch stays in flight
    add(10);
    const flushed = ledger.flush(3000);
    pipeline.sendLingering();
    expect(sent.map((s) => s.seqs)).toEqual([[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]]);
    pipeline.detach(); // the connection drops: the ten go back
    await sleep(200);
    pipeline.attach(link(10, (s) => s.done(null)));
    await flushed; // before the fix: they lingered 20 s again and the flush timed out
    expect(sent.slice(1).flatMap((s) => s.seqs)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    pipeline.stop();
  });

  it("a record that lingered once and was put back does not linger again", async () => {
    const { pipeline, add, sent, link } = setup({ lingerMs: 50 });
    // (a batch cut off by a lost connection goes again in batches of half its bytes)
    pipeline.attach(link(10));
    add(3);
    await sleep(120);
    expect(sent).toHaveLength(1); // its linger is over
    pipeline.detach();
    pipeline.attach(link(10, (s) => s.done(null)));
    expect(sent.map((s) => s.seqs)).toEqual([[0, 1, 2], [0], [1], [2]]); // at once, not 50 ms later
    pipeline.stop();
  });

  it("a record queued after flush() was called (a spool stores it first) does not linger", async () => {
    const { pipeline, make, sent, link, ledger } = setup({ lingerMs: 20_000 });
    pipeline.attach(link(10, (s) => s.done(null)));
    const r = make(8);
    ledger.add(r.seq, 8); // accepted: what reportUsage does before the spool stores it
    const flushed = ledger.flush(3000);
    pipeline.sendLingering(); // nothing queued yet
    await sleep(10);
    pipeline.enqueue(r); // the group commit is done
    await flushed;
    expect(sent.map((s) => s.seqs)).toEqual([[0]]);
    pipeline.stop();
  });

  it("once the flush is over, new records linger again", async () => {
    const { pipeline, add, sent, link, ledger } = setup({ lingerMs: 20_000 });
    pipeline.attach(link(10, (s) => s.done(null)));
    add(2);
    const flushed = ledger.flush(3000);
    pipeline.sendLingering();
    await flushed;
    add(2);
    await sleep(50);
    expect(sent.map((s) => s.seqs)).toEqual([[0, 1]]);
    pipeline.stop();
  });
});

describe("SendPipeline: a record larger than the connection allows", () => {
  it("is held as undeliverable, never published; the others go", async () => {
    const { pipeline, make, sent, link, ledger, logs } = setup({});
    // Queued before the connection's limits were known (as before the first CONNACK).
    for (const size of [8, 500, 8]) {
      const r = make(size);
      ledger.add(r.seq, size);
      pipeline.enqueue(r);
    }
    pipeline.attach(link(10, (s) => s.done(null), { maxBatchBytes: 100 }));
    await new Promise((r) => setImmediate(r));
    expect(sent.map((s) => s.seqs)).toEqual([[0], [2]]);
    expect(pipeline.undeliverable.map((r) => r.seq)).toEqual([1]);
    expect(pipeline.published).toBe(2);
    expect(ledger.pending).toBe(1); // still pending: flush and close report it
    expect(logs.join("\n")).toMatch(/record 1 \(500 bytes\).*100 bytes.*maximum packet size/);
  });

  it("put back by a lost connection, on a new connection with a smaller limit: the others go", async () => {
    const { pipeline, add, sent, link, logs } = setup({});
    const refused = () => Object.assign(new Error("refused"), { code: 0x97 });
    let first = true;
    pipeline.attach(
      link(10, (s) => {
        if (first) {
          first = false;
          s.done(refused());
        }
      }),
    );
    add(2, 8);
    add(1, 300);
    add(1, 8);
    await new Promise((r) => setImmediate(r));
    expect(sent[0]?.seqs).toEqual([0, 1, 2, 3]); // refused: split in [0, 1] and [2, 3]
    pipeline.detach();
    sent.length = 0;
    pipeline.attach(link(10, (s) => s.done(null), { maxBatchBytes: 100 }));
    expect(pipeline.undeliverable.map((r) => r.seq)).toEqual([2]);
    expect(sent.flatMap((s) => s.seqs).sort()).toEqual([0, 1, 3]);
    expect(logs.some((l) => l.includes("record 2 (300 bytes)"))).toBe(true);
  });
});

describe("DropCap", () => {
  const records = (n: number) =>
    Array.from({ length: n }, (_, i) => ({
      seq: i,
      id: `${i}`,
      bytes: Buffer.alloc(8),
      attempts: 0,
      losses: 0,
    }));

  it("halves below the largest batch cut off, doubles after 256 acknowledged messages, lifts at the bound", () => {
    const cap = new DropCap();
    expect(cap.bytes).toBe(Number.POSITIVE_INFINITY);
    cap.cutOff(records(40)); // 400 bytes framed
    expect(cap.bytes).toBe(200);
    cap.cutOff(records(100)); // a larger batch cut off does not raise it
    expect(cap.bytes).toBe(200);
    for (let i = 0; i < 255; i++) cap.acknowledged(1000);
    expect(cap.bytes).toBe(200);
    cap.acknowledged(1000);
    expect(cap.bytes).toBe(400);
    cap.cutOff(records(10)); // a drop starts the count again
    expect(cap.bytes).toBe(50);
    for (let i = 0; i < 256 * 5; i++) cap.acknowledged(1000);
    expect(cap.bytes).toBe(Number.POSITIVE_INFINITY); // 50 → 100 → 200 → 400 → 800 → lifted
  });
});
