import { describe, expect, it } from "vitest";
import { BillingClient } from "../../src/index.js";
import { useEmbeddedBroker } from "../helpers/embedded-broker.js";
import { sleep } from "../helpers/time.js";

// close(0) with thousands of records queued on a live connection recursed once per record and
// threw uncaught (found while testing issue 9.2).

const suite = useEmbeddedBroker();
const { options } = suite;
const base = { apiKey: "key-1", module: "llm", model: "gpt-4", usage: 1 };

// ---- found while testing 9.2 (not in issue 9): close() with a backlog --------------------------

describe("close() with records still queued on a live connection", () => {
  it("close(0) with 5,000 records queued throws nothing uncaught, and rejects TIMEOUT", async () => {
    // mqtt.js calls a publish callback synchronously once end() has begun; pump → publish →
    // callback → onPublished → pump … then recurses once per queued record.
    const uncaught: Error[] = [];
    const onUncaught = (err: Error) => uncaught.push(err);
    process.on("uncaughtException", onUncaught);
    try {
      // One record per message: 5,000 publishes, as when this was written (batches of 500 would
      // all be acknowledged during the goodbye, and close would not time out).
      const client = new BillingClient(options({ maxBatchRecords: 1 }));
      await client.connect(5000);
      for (let i = 0; i < 5000; i++) void client.reportUsage({ ...base, usage: i });
      const closed = await client.close(0).then(
        () => undefined,
        (e: unknown) => e,
      );
      await sleep(200);
      expect(
        uncaught.map((e) => `${e.name}: ${e.message}`).slice(0, 3),
        `uncaught exceptions during close (${uncaught.length})`,
      ).toEqual([]);
      expect(closed).toMatchObject({ code: "TIMEOUT" });
    } finally {
      process.off("uncaughtException", onUncaught);
    }
  });
});
