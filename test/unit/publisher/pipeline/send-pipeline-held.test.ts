import { expect, it } from "vitest";
import type { PendingRecord } from "../../../../src/publisher/pending-record.js";
import { PendingLedger } from "../../../../src/publisher/pipeline/pending-ledger.js";
import {
  type PublishLink,
  SendPipeline,
} from "../../../../src/publisher/pipeline/send-pipeline.js";
import { waitUntil } from "../../../helpers/time.js";

// A record that drops the connection each time it is sent alone is held as undeliverable, but
// the drops may have had another cause (a broker in a crash loop, a middlebox resetting
// connections): a review found such records given up for good, and lost at close in memory
// mode. Held records are tried again later (heldRetryMs, 5 min by default) and go once the
// broker takes them.
const HELD_RETRY_MS = 300;
it("a record held after dropping the connection alone is tried again later, and goes once the broker takes it", async () => {
  const ledger = new PendingLedger(1000, 1 << 20);
  const acked: number[] = [];
  const logs: string[] = [];
  let connections = 0;
  const holds: Array<{ at: number; connections: number }> = [];
  const retries: Array<{ at: number; connections: number }> = [];
  const pipeline = new SendPipeline({
    ledger,
    retryDelay: () => 2,
    acknowledged: (r) => acked.push(r.seq),
    log: (level, message) => {
      logs.push(`${level}: ${message}`);
      if (message.includes("held as undeliverable, never"))
        holds.push({ at: performance.now(), connections });
      if (message.includes("is tried once more"))
        retries.push({ at: performance.now(), connections });
    },
    maxBatchRecords: 1,
    heldRetryMs: HELD_RETRY_MS,
  });
  let fixed = false;
  const connect = () => {
    connections++;
    let up = true;
    const link: PublishLink = {
      window: 4,
      isUp: () => up,
      send(records, done) {
        const seq = (records[0] as PendingRecord).seq;
        if (seq === 0 && !fixed) {
          // The broker drops the connection with this record in flight.
          setImmediate(() => {
            up = false;
            pipeline.detach();
            setTimeout(connect, 1);
          });
        } else setImmediate(() => done(null));
      },
    };
    pipeline.attach(link);
  };
  for (let s = 0; s < 3; s++) {
    const bytes = Buffer.alloc(8);
    const r: PendingRecord = { seq: s, id: `id-${s}`, bytes, attempts: 0, losses: 0 };
    ledger.add(r.seq, r.bytes.length);
    pipeline.enqueue(r);
  }
  connect();
  await waitUntil(() => pipeline.undeliverable.length === 1, 5000, "record 0 held");
  await waitUntil(() => acked.length === 2, 5000, "records 1 and 2 acknowledged");
  expect(acked.sort()).toEqual([1, 2]);
  fixed = true; // the broker is fine again
  await waitUntil(() => acked.includes(0), 5000, "record 0 tried again and acknowledged");
  expect(pipeline.undeliverable).toEqual([]);
  // Between the first hold and its retry, only the reconnect that the drop which held it had
  // scheduled: the churn stopped. (Read from the log hook at the moment of each, so a slow
  // machine cannot move it: a CI run failed when it was counted after a poll instead.)
  const [hold, retry] = [holds[0], retries[0]];
  expect(retry?.connections).toBe((hold?.connections ?? Number.NaN) + 1);
  expect((retry?.at ?? 0) - (hold?.at ?? 0)).toBeGreaterThan(HELD_RETRY_MS / 2);
  pipeline.stop();
});
