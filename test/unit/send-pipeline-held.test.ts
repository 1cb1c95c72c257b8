import { expect, it } from "vitest";
import { PendingLedger } from "../../src/publisher/pending-ledger.js";
import type { PendingRecord } from "../../src/publisher/pending-record.js";
import { type PublishLink, SendPipeline } from "../../src/publisher/send-pipeline.js";
import { until } from "../helpers/aedes-broker.js";

// A record that drops the connection each time it is sent alone is held as undeliverable, but
// the drops may have had another cause (a broker in a crash loop, a middlebox resetting
// connections): a review found such records given up for good, and lost at close in memory
// mode. Held records are tried again later (heldRetryMs, 5 min by default) and go once the
// broker takes them.
it("a record held after dropping the connection alone is tried again later, and goes once the broker takes it", async () => {
  const ledger = new PendingLedger(1000, 1 << 20);
  const acked: number[] = [];
  const logs: string[] = [];
  let connections = 0;
  let connectionsAtHold = -1;
  const pipeline = new SendPipeline({
    ledger,
    retryDelay: () => 2,
    acknowledged: (r) => acked.push(r.seq),
    log: (level, message) => {
      logs.push(`${level}: ${message}`);
      if (message.includes("held as undeliverable, never")) connectionsAtHold = connections;
    },
    maxBatchRecords: 1,
    heldRetryMs: 1500,
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
  await until(() => pipeline.undeliverable.length === 1, 5000, "record 0 held");
  await until(() => acked.length === 2, 5000, "records 1 and 2 acknowledged");
  expect(acked.sort()).toEqual([1, 2]);
  // The drop that held it had already scheduled one reconnect (the link's, not the record's):
  // after that one, no more. (Counted from the moment of holding: a loaded machine may run
  // that reconnect before or after the poll above notices the hold.)
  await new Promise((r) => setTimeout(r, 200));
  expect(connections).toBe(connectionsAtHold + 1); // held: the churn stops
  fixed = true; // the broker is fine again
  await until(() => acked.includes(0), 5000, "record 0 tried again and acknowledged");
  expect(pipeline.undeliverable).toEqual([]);
  expect(logs.some((l) => l.includes("is tried once more"))).toBe(true);
  pipeline.stop();
});
