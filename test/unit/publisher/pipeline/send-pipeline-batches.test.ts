import { describe, expect, it } from "vitest";
import type { PendingRecord } from "../../../../src/publisher/pending-record.js";
import { PendingLedger } from "../../../../src/publisher/pipeline/pending-ledger.js";
import {
  type PublishLink,
  SendPipeline,
} from "../../../../src/publisher/pipeline/send-pipeline.js";
import { sleep } from "../../../helpers/time.js";

// Batches in the send pipeline, with a fake link (no broker): what goes together, what a PUBACK
// settles, how a refused batch is split, and lingerMs.

type Done = (err?: Error | null) => void;
type Sent = { seqs: number[]; done: Done };

function setup(opts: { maxBatchRecords?: number; maxBatchBytes?: number; lingerMs?: number }) {
  const ledger = new PendingLedger(1e9, 1e12);
  const acked: number[] = [];
  const pipeline = new SendPipeline({
    ledger,
    retryDelay: () => 5,
    acknowledged: (r) => acked.push(r.seq),
    log: () => {},
    ...opts,
  });
  let seq = 0;
  const add = (n: number, size = 8) => {
    for (let i = 0; i < n; i++) {
      const s = seq++;
      const r: PendingRecord = {
        seq: s,
        id: `${s}`,
        bytes: Buffer.alloc(size),
        attempts: 0,
        losses: 0,
      };
      ledger.add(s, size);
      pipeline.enqueue(r);
    }
  };
  const sent: Sent[] = [];
  const link = (window: number, answer?: (s: Sent) => void): PublishLink => ({
    window,
    isUp: () => true,
    send: (records, done) => {
      const s = { seqs: records.map((r) => r.seq), done };
      sent.push(s);
      answer?.(s);
    },
  });
  return { ledger, pipeline, acked, add, sent, link };
}
const turn = () => new Promise((r) => setImmediate(r));
const refused = () => Object.assign(new Error("refused"), { code: 0x97 });

describe("SendPipeline batches", () => {
  it("records of one turn go as one message; more than maxBatchRecords as several, in order", async () => {
    const { pipeline, add, sent, link, acked, ledger } = setup({ maxBatchRecords: 4 });
    pipeline.attach(link(10));
    add(10);
    expect(sent).toHaveLength(0); // sent at the end of the turn, together
    await turn();
    expect(sent.map((s) => s.seqs)).toEqual([
      [0, 1, 2, 3],
      [4, 5, 6, 7],
      [8, 9],
    ]);
    expect(pipeline.inFlightCount).toBe(10);
    sent[1]?.done(null); // one PUBACK settles its four records
    expect(acked).toEqual([4, 5, 6, 7]);
    expect(ledger.pending).toBe(6);
    expect(pipeline.published).toBe(4);
    expect(pipeline.messages).toBe(1);
  });

  it("a lone record waits for nothing; while the window is full, records gather for the next PUBACK", async () => {
    const { pipeline, add, sent, link } = setup({});
    pipeline.attach(link(1));
    add(1);
    await turn();
    expect(sent.map((s) => s.seqs)).toEqual([[0]]);
    for (let i = 0; i < 5; i++) {
      add(1);
      await turn();
    }
    expect(sent).toHaveLength(1);
    sent[0]?.done(null);
    expect(sent.map((s) => s.seqs)).toEqual([[0], [1, 2, 3, 4, 5]]);
  });

  it("keeps each batch within maxBatchBytes (framing counted) and the link's bound", async () => {
    const { pipeline, add, sent, link } = setup({ maxBatchBytes: 100 });
    pipeline.attach(link(100));
    add(10, 20); // 22 bytes framed each: 4 per 100 bytes
    await turn();
    expect(sent.map((s) => s.seqs.length)).toEqual([4, 4, 2]);
    const small = setup({});
    small.pipeline.attach({ ...small.link(100), maxBatchBytes: 50 });
    small.add(10, 20);
    await turn();
    expect(small.sent.map((s) => s.seqs.length)).toEqual([2, 2, 2, 2, 2]);
  });

  it("a refused batch is split in halves, each sent at once; a record refused alone waits and goes again", async () => {
    // The broker refuses any message holding seq 5 (until it was refused 3 times alone).
    let alone = 0;
    const { pipeline, add, sent, link, acked, ledger } = setup({});
    pipeline.attach(
      link(10, (s) =>
        queueMicrotask(() => {
          if (!s.seqs.includes(5)) return s.done(null);
          if (s.seqs.length === 1 && ++alone > 3) return s.done(null);
          s.done(refused());
        }),
      ),
    );
    add(8);
    await turn();
    await turn();
    expect(sent.slice(0, 5).map((s) => s.seqs)).toEqual([
      [0, 1, 2, 3, 4, 5, 6, 7],
      [0, 1, 2, 3],
      [4, 5, 6, 7],
      [4, 5],
      [6, 7],
    ]);
    expect(pipeline.failed).toBeGreaterThanOrEqual(1); // splits count nothing, [5] alone does
    expect(sent[5]?.seqs).toEqual([4]);
    expect(sent[6]?.seqs).toEqual([5]);
    expect(acked).toEqual([0, 1, 2, 3, 6, 7, 4]);
    expect(pipeline.retrying).toBe(1);
    await ledger.flush(5000);
    expect(acked.at(-1)).toBe(5);
    expect(new Set(acked).size).toBe(8);
    expect(pipeline.published).toBe(8);
  });

  it("a refusal about the topic (0x87) is not split: every record of the batch waits its delay", async () => {
    const { pipeline, add, sent, link } = setup({});
    let refusing = true;
    pipeline.attach(
      link(10, (s) =>
        queueMicrotask(() =>
          s.done(refusing ? Object.assign(new Error("no"), { code: 0x87 }) : null),
        ),
      ),
    );
    add(8);
    await turn();
    await turn();
    expect(sent.map((s) => s.seqs)).toEqual([[0, 1, 2, 3, 4, 5, 6, 7]]);
    expect(pipeline.retrying).toBe(8);
    expect(pipeline.failed).toBe(8);
    refusing = false;
    await sleep(30);
    expect(pipeline.published).toBe(8);
    expect(sent.length).toBeLessThanOrEqual(3); // the due retries go together again
  });

  it("a connection lost mid-batch puts all its records back, in order, in batches of half its bytes", async () => {
    const { pipeline, add, sent, link, acked } = setup({ maxBatchRecords: 4 });
    pipeline.attach(link(2));
    add(8);
    await turn();
    expect(sent.map((s) => s.seqs)).toEqual([
      [0, 1, 2, 3],
      [4, 5, 6, 7],
    ]);
    pipeline.detach();
    expect(pipeline.failed).toBe(8);
    add(1);
    pipeline.attach(link(10, (s) => s.done(null)));
    // 40 bytes framed were cut off: batches of at most 20 bytes now (it may be why we lost it).
    expect(sent.slice(2).map((s) => s.seqs)).toEqual([[0, 1], [2, 3], [4, 5], [6, 7], [8]]);
    expect(acked).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it("lingerMs: a batch that is not full waits up to lingerMs; a full one and flush go at once", async () => {
    const { pipeline, add, sent, link, ledger } = setup({ maxBatchRecords: 5, lingerMs: 60 });
    pipeline.attach(link(10, (s) => s.done(null)));
    for (let i = 0; i < 3; i++) {
      add(1);
      await sleep(5);
    }
    expect(sent).toHaveLength(0);
    await sleep(80);
    expect(sent.map((s) => s.seqs)).toEqual([[0, 1, 2]]);
    add(7); // a full batch goes at once, the rest waits
    await turn();
    expect(sent.map((s) => s.seqs)).toEqual([
      [0, 1, 2],
      [3, 4, 5, 6, 7],
    ]);
    const flushed = ledger.flush(1000);
    pipeline.sendLingering(); // what flush() does
    await flushed;
    expect(sent.map((s) => s.seqs)).toEqual([
      [0, 1, 2],
      [3, 4, 5, 6, 7],
      [8, 9],
    ]);
    pipeline.stop();
  });
});
