import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  BillingClient,
  type BillingClientOptions,
  getBillingClient,
} from "../../../../src/index.js";
import { AedesBroker } from "../../../helpers/aedes-broker.js";
import { plainClientOptions } from "../../../helpers/fixtures.js";
import { MemorySpool } from "../../../helpers/memory-spool.js";
import { sleep, waitUntil } from "../../../helpers/time.js";

// lingerMs with close() and flush() on a real broker (Aedes): what they wait for never lingers,
// also after a reconnect put it back, and also with a spool (records queued a turn later).

let broker: AedesBroker;
/** While set, the broker never answers a report (its PUBACKs never come). */
let deaf = false;

beforeAll(async () => {
  broker = await AedesBroker.create({ ignorePublish: (t) => deaf && t === "billing/report" });
});
afterAll(async () => {
  await broker.close();
});
afterEach(async () => {
  deaf = false;
  await getBillingClient()
    ?.close(100)
    .catch(() => {});
  await broker.start();
});

function options(extra: BillingClientOptions = {}): BillingClientOptions {
  return plainClientOptions(broker.port, { lingerMs: 20_000, ...extra });
}

const report = (client: BillingClient, usage: number) =>
  client.reportUsage({ apiKey: "key-1", module: "llm", model: "gpt-4", usage });

describe("lingerMs with close() and flush()", () => {
  it("close(): records put back by a reconnect go at once, none is lost", async () => {
    const client = new BillingClient(options());
    await client.connect();
    deaf = true;
    await Promise.all(Array.from({ length: 10 }, (_, i) => report(client, i)));
    const closed = client.close(5000);
    await waitUntil(() => client.stats().inFlight === 10, 3000, "the ten in flight");
    await sleep(200);
    await broker.stop(); // the connection drops with the batch in flight
    deaf = false;
    await broker.start();
    await closed; // before the fix: "closed with 10 usage records not acknowledged"
    expect(client.stats()).toMatchObject({ published: 10, queued: 0 });
  });

  it("flush() with a spool: a record reported just before it does not wait out lingerMs", async () => {
    const client = new BillingClient(options({ spool: new MemorySpool("linger") }));
    await client.connect();
    const id = report(client, 1); // not awaited: stored in the next group commit
    const t0 = Date.now();
    await client.flush(5000); // before the fix: TIMEOUT (the record lingered 20 s)
    expect(Date.now() - t0).toBeLessThan(4000);
    await id;
    expect(client.stats()).toMatchObject({ published: 1, queued: 0 });
  });
});
