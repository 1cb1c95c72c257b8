import { describe, expect, it } from "vitest";
import type { PendingRecord } from "../../../../src/publisher/pending-record.js";
import { PendingLedger } from "../../../../src/publisher/pipeline/pending-ledger.js";
import {
  type PublishLink,
  SendPipeline,
} from "../../../../src/publisher/pipeline/send-pipeline.js";
import { sleep } from "../../../helpers/time.js";

// A randomized model check of the send pipeline and the ledger (first written as a probe by the
// adversarial review of issue 9): random interleavings of new records, connections coming and
// going (also synchronously, inside a publish), PUBACKs in any order, refusals, late callbacks
// from dead connections and flushes. Invariants: no record settles twice; at the end every
// record settled but those held as undeliverable; every flush resolves, and only once every
// record accepted before it had settled. With batches (issue 13): batch limits vary by seed, a
// PUBACK settles its whole batch, refused batches are split; no message exceeds its limits; on
// each connection, records that were never refused nor suspect go out in increasing seq. PUBACK
// 0x10 answers (no subscriber: not delivered) put their records back and hold the window.

type Done = (err?: Error | null) => void;
type FakeLink = PublishLink & { up: boolean; pend: Array<{ s: number[]; done: Done }> };

function rng(seed: number) {
  let x = seed;
  return () => {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    return x / 0x7fffffff;
  };
}

async function run(seed: number, steps: number) {
  const r = rng(seed);
  const maxBatchRecords = seed % 3 === 0 ? 1 : 1 + Math.floor(r() * 8);
  const ledger = new PendingLedger(1e9, 1e12);
  const settled = new Map<number, number>();
  const settle = ledger.settle.bind(ledger);
  ledger.settle = (s, n) => {
    settled.set(s, (settled.get(s) ?? 0) + 1);
    settle(s, n);
  };
  const pipeline = new SendPipeline({
    ledger,
    retryDelay: () => 1 + Math.floor(r() * 3),
    acknowledged: () => {},
    log: () => {},
    maxBatchRecords,
    noSubscriberMs: { first: 1, max: 4 },
  });
  const tainted = new Set<number>(); // refused (alone or in a batch) or sent as a suspect
  const problems: string[] = [];
  let multi = 0; // messages of more than one record
  const accepted: number[] = [];
  const late: Array<{ s: number[]; done: Done }> = [];
  const flushes: Array<Promise<string>> = [];
  let link: FakeLink | undefined;
  let seq = 0;
  const makeLink = (): FakeLink => {
    let lastPlain = -1;
    const maxBytes = 10 * (1 + Math.floor(r() * 6)); // 8-byte records: 10 bytes framed each
    const l: FakeLink = {
      window: 1 + Math.floor(r() * 5),
      maxBatchBytes: maxBytes,
      up: true,
      pend: [],
      isUp: () => l.up,
      send(records, done) {
        const s = records.map((x) => x.bytes.readUInt32BE(0));
        if (records.length > 1) multi++;
        if (
          records.length > maxBatchRecords ||
          (records.length > 1 && records.length * 10 > maxBytes)
        ) {
          problems.push(`a batch of ${records.length} over its limits`);
        }
        for (const rec of records) {
          if (rec.losses >= 3) tainted.add(rec.seq);
          if (tainted.has(rec.seq)) continue;
          if (rec.seq <= lastPlain) problems.push(`seq ${rec.seq} after ${lastPlain}`);
          lastPlain = rec.seq;
        }
        const refuse = () => {
          for (const x of s) tainted.add(x);
          done(Object.assign(new Error("refused"), { code: 0x87 }));
        };
        const x = r();
        if (x < 0.1)
          done(null); // a PUBACK before publish returns
        else if (x < 0.15) refuse();
        else if (x < 0.18) {
          l.up = false; // the connection goes while publishing
          done(new Error("Connection closed"));
        } else l.pend.push({ s, done });
      },
    };
    return l;
  };
  for (let step = 0; step < steps; step++) {
    const x = r();
    if (x < 0.3) {
      const s = seq++;
      const bytes = Buffer.alloc(8);
      bytes.writeUInt32BE(s);
      const record: PendingRecord = { seq: s, id: `${s}`, bytes, attempts: 0, losses: 0 };
      ledger.add(s, 8);
      accepted.push(s);
      pipeline.enqueue(record);
    } else if (x < 0.35) {
      if (link === undefined) {
        link = makeLink();
        pipeline.attach(link);
      }
    } else if (x < 0.4) {
      if (link !== undefined) {
        link.up = false;
        late.push(...link.pend);
        pipeline.detach();
        link = undefined;
      }
    } else if (x < 0.6) {
      if (link?.pend.length) {
        const [p] = link.pend.splice(Math.floor(r() * link.pend.length), 1);
        p?.done(null);
      }
    } else if (x < 0.65) {
      const p = link?.pend.shift();
      for (const t of p?.s ?? []) tainted.add(t);
      const code = x < 0.63 ? 0x80 : 0x10; // refused, or taken and dropped (no subscriber)
      p?.done(Object.assign(new Error("refused"), { code }));
    } else if (x < 0.7) {
      late.shift()?.done(r() < 0.5 ? null : new Error("Connection closed"));
    } else if (x < 0.72) {
      const before = accepted.filter((s) => !settled.has(s));
      flushes.push(
        ledger.flush(100_000).then(() => {
          const missing = before.filter((s) => !settled.has(s));
          return missing.length === 0 ? "ok" : `resolved with ${missing.length} unsettled`;
        }),
      );
    } else if (x < 0.75) {
      await sleep(2);
    }
  }
  // Drain through a good connection.
  if (link !== undefined) {
    link.up = false;
    pipeline.detach();
  }
  pipeline.attach({ window: 8, isUp: () => true, send: (_b, d) => setImmediate(() => d(null)) });
  await new Promise((res) => setImmediate(res));
  const held = () => pipeline.undeliverable.length;
  for (const end = Date.now() + 5000; ledger.pending > held() && Date.now() < end; ) {
    await sleep(5);
  }
  pipeline.stop();
  const undeliverable = new Set(pipeline.undeliverable.map((p) => p.seq));
  // Flushes that waited for an undeliverable record cannot resolve: only the others are checked.
  const outcomes = await Promise.race([
    Promise.all(flushes.map((f) => Promise.race([f, sleep(50)]))),
    new Promise<unknown[]>((res) => setTimeout(() => res(["hang"]), 2000)),
  ]);
  return {
    twice: [...settled].filter(([, c]) => c > 1).length,
    unsettled: accepted.filter((s) => !settled.has(s) && !undeliverable.has(s)).length,
    heldButSettled: [...undeliverable].filter((s) => settled.has(s)).length,
    badFlushes: outcomes.filter((o) => o !== "ok" && o !== undefined),
    pending: ledger.pending - undeliverable.size,
    problems: problems.slice(0, 3),
    batched: maxBatchRecords === 1 || multi > 0,
  };
}

describe("SendPipeline model check", () => {
  it("holds its invariants over random interleavings, with and without batches (60 seeds × 2,500 steps)", async () => {
    for (let seed = 1; seed <= 60; seed++) {
      expect(await run(seed, 2500), `seed ${seed}`).toEqual({
        twice: 0,
        unsettled: 0,
        heldButSettled: 0,
        badFlushes: [],
        pending: 0,
        problems: [],
        batched: true,
      });
    }
  }, 60_000);
});
