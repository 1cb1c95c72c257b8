import { describe, expect, it } from "vitest";
import type { PendingRecord } from "../../../../src/publisher/pending-record.js";
import { PendingLedger } from "../../../../src/publisher/pipeline/pending-ledger.js";
import {
  type PublishLink,
  SendPipeline,
} from "../../../../src/publisher/pipeline/send-pipeline.js";
import { sleep, waitUntil } from "../../../helpers/time.js";
import { workTimer } from "../../../helpers/work-timer.js";

// The send pipeline without MQTT: a fake link stands for the connection, so the window, the
// retry schedule, suspect isolation and flush watermarks are tested with no broker at all.

type Done = (err?: Error | null) => void;

class FakeLink implements PublishLink {
  up = true;
  /** Each message sent: its first record's seq, all its seqs, and its callback. */
  readonly sent: Array<{ seq: number; seqs: number[]; done: Done }> = [];
  maxBatchBytes?: number;
  constructor(
    readonly window: number,
    private readonly decode: (bytes: Buffer) => number,
    private readonly answer?: (seq: number, done: Done, seqs: number[]) => void,
  ) {}
  isUp() {
    return this.up;
  }
  send(records: readonly PendingRecord[], done: Done) {
    const seqs = records.map((r) => this.decode(r.bytes));
    const seq = seqs[0] as number;
    if (this.answer) this.answer(seq, done, seqs);
    else this.sent.push({ seq, seqs, done });
  }
  ackAll() {
    for (const s of this.sent.splice(0)) s.done(null);
  }
}

// One record per message unless a test asks for batches: the per-record rules are the same.
function setup(maxQueued = 1_000_000, batch: { maxBatchRecords?: number; lingerMs?: number } = {}) {
  const ledger = new PendingLedger(maxQueued, 1 << 30);
  const acked: number[] = [];
  const logs: string[] = [];
  const pipeline = new SendPipeline({
    ledger,
    retryDelay: (n) => Math.min(5 * 2 ** n, 40),
    acknowledged: (r) => acked.push(r.seq),
    log: (level, message) => logs.push(`${level}: ${message}`),
    maxBatchRecords: batch.maxBatchRecords ?? 1,
    ...(batch.lingerMs === undefined ? {} : { lingerMs: batch.lingerMs }),
  });
  let seq = 0;
  const add = (n: number) => {
    for (let i = 0; i < n; i++) {
      const s = seq++;
      const bytes = Buffer.alloc(8);
      bytes.writeUInt32BE(s);
      const r: PendingRecord = { seq: s, id: `id-${s}`, bytes, attempts: 0, losses: 0 };
      ledger.add(r.seq, r.bytes.length);
      pipeline.enqueue(r);
    }
  };
  return { ledger, pipeline, acked, logs, add };
}
const seqOf = (b: Buffer) => b.readUInt32BE(0);
const tick = () => new Promise((r) => setImmediate(r));

describe("SendPipeline", () => {
  it("keeps at most `window` records in flight and sends the next on each PUBACK, oldest first", () => {
    const { pipeline, acked, add } = setup();
    const link = new FakeLink(4, seqOf);
    add(10);
    pipeline.attach(link);
    expect(link.sent.map((s) => s.seq)).toEqual([0, 1, 2, 3]);
    link.sent.shift()?.done(null);
    expect(link.sent.map((s) => s.seq)).toEqual([1, 2, 3, 4]);
    while (link.sent.length > 0) link.ackAll();
    expect(acked).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(pipeline.published).toBe(10);
  });

  it("puts records cut off by a lost connection back, in order, before newer ones", () => {
    const { pipeline, add } = setup();
    const first = new FakeLink(3, seqOf);
    add(5);
    pipeline.attach(first);
    first.up = false;
    pipeline.detach();
    expect(pipeline.failed).toBe(3);
    const second = new FakeLink(10, seqOf);
    pipeline.attach(second);
    expect(second.sent.map((s) => s.seq)).toEqual([0, 1, 2, 3, 4]);
    // A late callback of the dead connection changes nothing.
    first.ackAll();
    expect(pipeline.published).toBe(0);
  });

  it("a record the broker refuses waits apart; the others go on; it is sent again when due", async () => {
    const { pipeline, acked, add } = setup();
    const refused = Object.assign(new Error("refused"), { code: 0x87 });
    let refusals = 0;
    const link = new FakeLink(10, seqOf, (seq, done) => {
      if (seq === 2 && refusals++ < 2) queueMicrotask(() => done(refused));
      else queueMicrotask(() => done(null));
    });
    add(5);
    pipeline.attach(link);
    await tick();
    expect(acked).toEqual([0, 1, 3, 4]);
    expect(pipeline.retrying).toBe(1);
    await sleep(100);
    expect(acked).toEqual([0, 1, 3, 4, 2]);
    expect(pipeline.failed).toBe(2);
    expect(pipeline.retrying).toBe(0);
  });

  it("a record in flight at three losses in a row is sent alone; if it drops the connection alone it waits apart", () => {
    const { pipeline, add } = setup();
    add(3);
    for (let i = 0; i < 3; i++) {
      const l = new FakeLink(10, seqOf);
      pipeline.attach(l);
      l.up = false;
      pipeline.detach();
    }
    const alone = new FakeLink(10, seqOf);
    pipeline.attach(alone);
    expect(alone.sent.map((s) => s.seq)).toEqual([0]); // the suspect, alone
    alone.up = false;
    pipeline.detach(); // it dropped the connection while alone: the cause
    expect(pipeline.retrying).toBe(1);
    const next = new FakeLink(10, seqOf);
    pipeline.attach(next);
    expect(next.sent[0]?.seq).toBe(1); // the others are no longer held up
  });

  it("a link that fails every publish synchronously (mqtt.js while disconnecting) cannot overflow the stack", () => {
    const { pipeline, add } = setup();
    let link: FakeLink;
    link = new FakeLink(256, seqOf, (_seq, done) => {
      link.up = false; // the connection is going down: mqtt.js answers "client disconnecting"
      done(new Error("client disconnecting"));
    });
    add(100_000);
    expect(() => pipeline.attach(link)).not.toThrow();
    expect(pipeline.queued).toBe(100_000); // every record still there, none lost
    const ok = new FakeLink(100_000, seqOf);
    pipeline.attach(ok);
    expect(ok.sent).toHaveLength(100_000);
  });

  it("300,000 refused records in the retry schedule: no stack overflow, no callback over 50 ms", async () => {
    const { pipeline, add, logs } = setup();
    const refused = Object.assign(new Error("not authorized"), { code: 0x87 });
    let answered = 0;
    // Everything the pipeline does runs in these callbacks (a refusal, and the retry timer's
    // pump): each is timed. (Event-loop delay would also count other processes on a busy box.)
    const timer = workTimer();
    const timed = (fn: () => void) => timer.time(fn);
    const link = new FakeLink(1000, seqOf, (_seq, done) => {
      answered++;
      setImmediate(() => timed(() => done(refused)));
    });
    const pump = pipeline.pump.bind(pipeline);
    pipeline.pump = () => timed(pump);
    add(300_000);
    pipeline.attach(link);
    // Let every record be refused at least once, then keep cycling through retries.
    while (answered < 300_000) await sleep(20);
    timer.start();
    const until = answered + 200_000;
    while (answered < until) await sleep(20);
    timer.stop();
    expect(pipeline.retrying + pipeline.inFlightCount + pipeline.queued).toBe(300_000);
    expect(await timer.worstMs()).toBeLessThan(50);
    // Refusals are summarised, not logged one line each.
    expect(logs.length).toBeLessThan(20);
    pipeline.stop();
  }, 60_000);
});

describe("PendingLedger flush", () => {
  it("resolves once the records accepted before the call are settled, while new ones keep coming", async () => {
    const { pipeline, ledger, add, acked } = setup();
    // A broker 20 ms away: every PUBACK comes back 20 ms after its publish.
    const link = new FakeLink(64, seqOf, (_seq, done) => setTimeout(() => done(null), 20));
    pipeline.attach(link);
    let stop = false;
    const load = (async () => {
      while (!stop) {
        add(20); // ~2,000 records/s
        await sleep(10);
      }
    })();
    await sleep(200);
    let addedDuringFlushes = 0;
    for (let i = 0; i < 5; i++) {
      // Each flush starts with records in flight (a flush that resolves at once, with nothing
      // pending, lets no time pass for the load to go on).
      await waitUntil(() => ledger.pending > 0, 5000, "records in flight");
      const before = ledger.pending;
      const lastBefore = acked.length + before - 1;
      await ledger.flush(3000);
      // Every record accepted before the call is acknowledged (seqs 0..lastBefore).
      expect(new Set(acked).size).toBeGreaterThan(lastBefore);
      for (let s = 0; s <= lastBefore; s++) expect(acked.includes(s)).toBe(true);
      addedDuringFlushes += acked.length + ledger.pending - 1 - lastBefore;
    }
    expect(addedDuringFlushes).toBeGreaterThan(0); // the load went on while they waited
    stop = true;
    await load;
    await ledger.flush(3000);
    expect(ledger.pending).toBe(0);
  });

  it("resolves while records accepted after the call are still unacknowledged (a watermark, not zero)", async () => {
    const { pipeline, ledger, add, acked } = setup();
    const link = new FakeLink(64, seqOf); // PUBACKs only when the test gives them
    pipeline.attach(link);
    add(10);
    const flushed = ledger.flush(3000);
    add(20); // accepted after the call, and never acknowledged while it waits
    await waitUntil(() => link.sent.length === 30, 2000, "30 records sent");
    for (const s of link.sent.splice(0, 10)) s.done(null);
    await flushed; // the old flush waited for zero pending: a TIMEOUT here
    expect(acked).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(ledger.pending).toBe(20);
    link.ackAll();
    await ledger.flush(1000);
    expect(ledger.pending).toBe(0);
  });

  it("counts bytes and refuses past either bound with QUEUE_FULL", () => {
    const ledger = new PendingLedger(3, 100);
    ledger.checkRoom(100);
    expect(() => ledger.checkRoom(101)).toThrow(/maxQueuedBytes 100/);
    ledger.add(0, 60);
    expect(() => ledger.checkRoom(41)).toThrow(expect.objectContaining({ code: "QUEUE_FULL" }));
    ledger.add(1, 10);
    ledger.add(2, 10);
    expect(() => ledger.checkRoom(1)).toThrow(/maxQueued 3/);
    ledger.settle(0, 60);
    expect(ledger.bytes).toBe(20);
    ledger.checkRoom(80);
  });
});
