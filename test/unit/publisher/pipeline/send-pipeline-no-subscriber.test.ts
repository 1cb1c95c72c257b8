import { afterEach, describe, expect, it, vi } from "vitest";
import type { PendingRecord } from "../../../../src/publisher/pending-record.js";
import {
  NO_SUBSCRIBER_FIRST_MS,
  NO_SUBSCRIBER_MAX_MS,
  NoSubscriberHold,
} from "../../../../src/publisher/pipeline/no-subscriber-hold.js";
import { PendingLedger } from "../../../../src/publisher/pipeline/pending-ledger.js";
import {
  type PublishLink,
  SendPipeline,
} from "../../../../src/publisher/pipeline/send-pipeline.js";
import { waitUntil } from "../../../helpers/time.js";

// PUBACK 0x10 (no matching subscribers) on the report topic, without a broker: a link that
// answers as mosquitto does when nobody subscribes. The real broker is in
// test/integration/no-subscriber.test.ts.

type Done = (err?: Error | null) => void;
const noSubscriber = () => Object.assign(new Error("PUBACK reason 0x10"), { code: 0x10 });

class Link implements PublishLink {
  readonly sent: Array<{ seqs: number[]; at: number; done: Done }> = [];
  up = true;
  constructor(readonly window: number) {}
  isUp() {
    return this.up;
  }
  send(records: readonly PendingRecord[], done: Done) {
    this.sent.push({ seqs: records.map((r) => r.seq), at: Date.now(), done });
  }
  /** Answers every message awaiting its PUBACK with `err` (null: delivered). */
  answerAll(err: Error | null) {
    for (const s of this.sent.splice(0)) s.done(err);
  }
}

function setup(n: number, maxBatchRecords = 10, wait = { first: 20, max: 80 }) {
  const ledger = new PendingLedger(1e6, 1 << 30);
  const acked: number[] = [];
  const logs: string[] = [];
  const pipeline = new SendPipeline({
    ledger,
    retryDelay: () => 5,
    acknowledged: (r) => acked.push(r.seq),
    log: (level, message) => logs.push(`${level}: ${message}`),
    maxBatchRecords,
    topic: "billing/report",
    noSubscriberMs: wait,
  });
  for (let seq = 0; seq < n; seq++) {
    const r: PendingRecord = {
      seq,
      id: `id-${seq}`,
      bytes: Buffer.alloc(8),
      attempts: 0,
      losses: 0,
    };
    ledger.add(seq, 8);
    pipeline.enqueue(r);
  }
  return { ledger, pipeline, acked, logs };
}
const tick = () => new Promise((r) => setImmediate(r));

describe("SendPipeline, PUBACK 0x10 (no subscriber)", () => {
  it("records answered 0x10 stay pending, go back in order, and one probe at a time is sent until one is delivered", async () => {
    const { ledger, pipeline, acked, logs } = setup(100);
    const link = new Link(4);
    pipeline.attach(link);
    await tick();
    expect(link.sent.map((s) => s.seqs[0])).toEqual([0, 10, 20, 30]);
    const t0 = Date.now();
    link.answerAll(noSubscriber());
    // Nothing counted published or settled, nothing failed; all 100 still pending.
    expect(pipeline.published).toBe(0);
    expect(pipeline.failed).toBe(0);
    expect(ledger.pending).toBe(100);
    expect(pipeline.noSubscriber.held).toBe(40);
    expect(acked).toEqual([]);
    expect(link.sent).toEqual([]); // nothing more until the wait is over
    // One probe, the oldest records, after the first wait; then a wait twice as long.
    await waitUntil(() => link.sent.length === 1, 1000, "the first probe");
    expect(Date.now() - t0).toBeGreaterThanOrEqual(19);
    expect(link.sent[0]?.seqs).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    await tick();
    expect(link.sent).toHaveLength(1); // alone
    const t1 = Date.now();
    link.answerAll(noSubscriber());
    await waitUntil(() => link.sent.length === 1, 1000, "the second probe");
    expect(Date.now() - t1).toBeGreaterThanOrEqual(39);
    expect(link.sent[0]?.seqs[0]).toBe(0);
    expect(pipeline.noSubscriber.held).toBe(50);
    expect(pipeline.noSubscriber.cause()).toMatch(
      /^no subscriber on billing\/report since .*PUBACK reason 0x10.*billing-sdk ingest/,
    );
    // Delivered: the episode ends, the window opens, the rest goes in order, each once.
    link.answerAll(null);
    await tick();
    expect(link.sent.map((s) => s.seqs[0])).toEqual([10, 20, 30, 40]);
    while (link.sent.length > 0) {
      link.answerAll(null);
      await tick();
    }
    expect(acked).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(ledger.pending).toBe(0);
    expect(pipeline.noSubscriber.cause()).toBeUndefined();
    expect(logs.filter((l) => l.startsWith("warn: no subscriber on billing/report"))).toHaveLength(
      1,
    );
    expect(logs.filter((l) => l.includes("has a subscriber again"))).toHaveLength(1);
  });

  it("flush() waits for them: it resolves only once they are delivered", async () => {
    const { ledger, pipeline } = setup(5, 10);
    const link = new Link(4);
    pipeline.attach(link);
    await tick();
    link.answerAll(noSubscriber());
    let flushed = false;
    const flush = ledger.flush(5000).then(() => {
      flushed = true;
    });
    await waitUntil(() => link.sent.length === 1, 1000, "a probe");
    link.answerAll(noSubscriber());
    await new Promise((r) => setTimeout(r, 30));
    expect(flushed).toBe(false);
    await waitUntil(() => link.sent.length === 1, 1000, "another probe");
    link.answerAll(null);
    await flush;
    expect(ledger.pending).toBe(0);
  });

  it("a probe cut off by a lost connection goes again on the next one; a second episode warns again", async () => {
    const { pipeline, acked, logs } = setup(3, 1);
    const first = new Link(4);
    pipeline.attach(first);
    await tick();
    first.answerAll(noSubscriber());
    await waitUntil(() => first.sent.length === 1, 1000, "a probe");
    first.up = false;
    pipeline.detach();
    const second = new Link(4);
    pipeline.attach(second);
    await waitUntil(() => second.sent.length === 1, 1000, "the probe again");
    expect(second.sent[0]?.seqs).toEqual([0]);
    second.answerAll(null);
    await tick();
    second.answerAll(noSubscriber()); // the subscriber left again
    await waitUntil(() => second.sent.length === 1, 1000, "a probe of the second episode");
    second.answerAll(null);
    while (second.sent.length > 0 || acked.length < 3) {
      second.answerAll(null);
      await tick();
    }
    expect(acked).toEqual([0, 1, 2]);
    expect(logs.filter((l) => l.startsWith("warn: no subscriber on"))).toHaveLength(2);
  });
});

/**
 * A link that answers each message in turn from `script` (1 ms later, as a broker would), then
 * delivers everything; it notes how many messages awaited their answer when each was sent.
 */
class ScriptedLink implements PublishLink {
  readonly window = 4;
  readonly sent: Array<{ seqs: number[]; inFlight: number; answer: string }> = [];
  private inFlight = 0;
  constructor(private readonly script: Array<Error | null>) {}
  isUp() {
    return true;
  }
  send(records: readonly PendingRecord[], done: Done) {
    const err = this.script.shift() ?? null;
    const answer = err === null ? "ok" : String((err as { code?: number }).code ?? err.message);
    this.sent.push({ seqs: records.map((r) => r.seq), inFlight: this.inFlight++, answer });
    setTimeout(() => {
      this.inFlight--;
      done(err);
    }, 1);
  }
}
const refused = (code: number) => Object.assign(new Error(`Publish error: code ${code}`), { code });

describe("SendPipeline, a 0x10 episode whose probe is not answered 0x10", () => {
  it.each([
    ["refused 0x80 (split in halves)", [refused(0x80)]],
    ["refused 0x87 (not authorized: each record retried)", [refused(0x87)]],
    ["failed by mqtt.js while the connection is up", [new Error("Publish error: too large")]],
    [
      "refused 0x80, a half refused again, a quarter answered 0x10",
      [refused(0x80), refused(0x80), noSubscriber(), refused(0x80)],
    ],
  ])(
    "%s: the next probe goes, and all is delivered once the broker takes it",
    async (_, answers) => {
      const { ledger, pipeline, acked, logs } = setup(10, 10, { first: 5, max: 20 });
      const link = new ScriptedLink([noSubscriber(), ...answers]);
      pipeline.attach(link);
      await waitUntil(
        () => ledger.pending === 0,
        3000,
        `every record acknowledged (sent: ${JSON.stringify(link.sent)})`,
      );
      // Each record acknowledged once, none lost; one message at a time until one is delivered.
      expect([...acked].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      const firstDelivered = link.sent.findIndex((s) => s.answer === "ok");
      expect(link.sent.slice(0, firstDelivered).map((s) => s.inFlight)).toEqual(
        Array(firstDelivered).fill(0),
      );
      expect(pipeline.noSubscriber.cause()).toBeUndefined();
      expect(logs.filter((l) => l.includes("has a subscriber again"))).toHaveLength(1);
    },
  );

  it("a probe refused for good: the cause given is the refusal, not the missing subscriber", async () => {
    const { ledger, pipeline, acked } = setup(10, 10, { first: 5, max: 20 });
    const script = [noSubscriber(), ...Array.from({ length: 1000 }, () => refused(0x87))];
    const link = new ScriptedLink(script);
    pipeline.attach(link);
    await waitUntil(() => link.sent.length >= 4, 3000, "the probe refused, then retried");
    expect(pipeline.noSubscriber.cause()).toBeUndefined();
    expect(pipeline.cause()).toMatch(
      /^refused records are retried after a growing delay \(the last reason: PUBACK reason code 135 \(Publish error: code 135\); \d+ waiting now\)$/,
    );
    script.length = 0; // the broker takes everything again
    await waitUntil(() => ledger.pending === 0, 3000, "every record acknowledged");
    expect(acked).toHaveLength(10);
    expect(pipeline.cause()).toBeUndefined();
  });
});

describe("SendPipeline, the wait of a 0x10 episode and the clocks", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it.each([
    [
      "its timer fires before Date.now() reaches the end of the wait (they read other clocks)",
      false,
    ],
    [
      "its timer fired while disconnected, and the wall clock stepped back before the reconnect",
      true,
    ],
  ])("%s: the probe still goes", async (_, reconnect) => {
    vi.useFakeTimers();
    const { pipeline } = setup(3, 10, { first: 20, max: 80 });
    let link = new Link(4);
    pipeline.attach(link);
    link.answerAll(noSubscriber()); // the wait ends 20 ms from now
    if (reconnect) {
      link.up = false;
      pipeline.detach();
      await vi.advanceTimersByTimeAsync(30); // the timer fires: no connection to send on
      vi.setSystemTime(Date.now() - 50); // the wall clock steps back 50 ms
      link = new Link(4);
      pipeline.attach(link);
    } else {
      vi.setSystemTime(Date.now() - 2); // Date.now() lags the timers' clock by 2 ms
    }
    expect(link.sent).toEqual([]);
    await vi.advanceTimersByTimeAsync(25); // at most the wait (20 ms) from now
    expect(link.sent.map((s) => s.seqs)).toEqual([[0, 1, 2]]);
    pipeline.stop();
  });
});

describe("NoSubscriberHold", () => {
  it("waits 100 ms, then twice as long after each probe answered 0x10, at most 5 s; batches sent before the episode do not lengthen it", () => {
    expect([NO_SUBSCRIBER_FIRST_MS, NO_SUBSCRIBER_MAX_MS]).toEqual([100, 5000]);
    const hold = new NoSubscriberHold(
      "t",
      () => {},
      () => {},
    );
    const record = (): PendingRecord => ({
      seq: 0,
      id: "x",
      bytes: Buffer.alloc(1),
      attempts: 0,
      losses: 0,
    });
    const waits: number[] = [];
    let now = 1_000_000;
    hold.settled([record()], { t: "no-subscriber" }, now);
    hold.settled([record()], { t: "no-subscriber" }, now); // another batch sent before the episode
    for (let i = 0; i < 9; i++) {
      let t = now;
      while (!hold.mayGo(t, 0)) t++;
      waits.push(t - now);
      expect(hold.mayGo(t, 1)).toBe(false); // not while something is in flight
      const probe = [record()];
      hold.sent(probe);
      expect(hold.mayGo(t, 0)).toBe(false); // one probe at a time
      now = t;
      hold.settled(probe, { t: "no-subscriber" }, now);
    }
    expect(waits).toEqual([100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    expect(hold.held).toBe(11);
    hold.settled([record()], { t: "delivered" }, now);
    expect(hold.mayGo(now, 4)).toBe(true);
    hold.stop();
  });
});
