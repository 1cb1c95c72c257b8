import { describe, expect, it } from "vitest";
import { BillingClient, type BillingError, reportUsage } from "../../../../src/index.js";
import { useEmbeddedBroker } from "../../../helpers/embedded-broker.js";
import { MemorySpool } from "../../../helpers/memory-spool.js";
import { waitUntil } from "../../../helpers/time.js";

// The waitUntil pattern of the README for short-lived processes (serverless handlers, CLI jobs):
// `await client.flush()` before returning. reportUsage resolves once a record is queued, not
// acknowledged: these tests show what flush and close say about a record whose PUBACK has not
// come, against an embedded broker that can be made to never answer.
let deaf = false;
const suite = useEmbeddedBroker({ ignorePublish: (topic) => deaf && topic === "billing/report" });
const usage = (i: number) => ({ apiKey: "key-1", module: "llm", model: "m", usage: i });

describe("waitUntil: await client.flush() before returning", () => {
  it("a handler that flushes before returning has every record it reported acknowledged", async () => {
    const client = new BillingClient(suite.options());
    // The README's handler: report, then flush (waitUntil) before the platform freezes us.
    async function handler(n: number): Promise<string> {
      for (let i = 0; i < n; i++) await reportUsage(usage(i));
      await client.flush(5_000);
      return "done";
    }
    expect(await handler(25)).toBe("done");
    expect(client.stats()).toMatchObject({ published: 25, queued: 0, inFlight: 0 });
    expect(suite.received()).toHaveLength(25);
  });

  it("a record resolved but not acknowledged: flush rejects TIMEOUT with the count; the record stays queued and goes out on the next connection", async () => {
    const client = new BillingClient(suite.options());
    await client.connect();
    deaf = true;
    const id = await client.reportUsage(usage(1)); // resolved: queued, published, no PUBACK
    await waitUntil(() => client.stats().inFlight === 1, 5000, "in flight");
    const err = (await client.flush(200).catch((e: unknown) => e)) as BillingError;
    expect(err.code).toBe("TIMEOUT");
    expect(err.message).toMatch(/1 records not yet acknowledged/);
    expect(client.stats()).toMatchObject({ queued: 1, inFlight: 1, published: 0 });
    expect(suite.received()).toHaveLength(0);
    // The record is not lost while the process lives: a new connection sends it again.
    deaf = false;
    await suite.broker.stop();
    await suite.broker.start();
    await client.flush(10_000);
    expect(suite.received().map((r) => r.id)).toEqual([id]);
    expect(client.stats()).toMatchObject({ queued: 0, published: 1 });
  });

  it("close() with a record never acknowledged (memory mode): rejects TIMEOUT and logs it as lost", async () => {
    const client = new BillingClient(suite.options());
    await client.connect();
    deaf = true;
    await client.reportUsage(usage(1));
    await waitUntil(() => client.stats().inFlight === 1, 5000, "in flight");
    const err = (await client.close(200).catch((e: unknown) => e)) as BillingError;
    expect(err.code).toBe("TIMEOUT");
    expect(err.message).toMatch(/1 usage records not acknowledged/);
    expect(suite.logs.some((l) => l.level === "error" && /they are lost/.test(l.msg))).toBe(true);
    expect(suite.received()).toHaveLength(0);
  });

  it("with a spool, the same record stays in it and the next process sends it", async () => {
    const spool = new MemorySpool(`wait-until-${Date.now()}`);
    const first = new BillingClient(suite.options({ spool }));
    await first.connect();
    deaf = true;
    const id = await first.reportUsage(usage(1));
    await waitUntil(() => first.stats().inFlight === 1, 5000, "in flight");
    await expect(first.close(200)).resolves.toBeUndefined(); // nothing lost: kept in the spool
    expect(spool.count()).toBe(1);
    deaf = false;
    const next = new BillingClient(suite.options({ spool }));
    await next.flush(10_000);
    expect(suite.received().map((r) => r.id)).toEqual([id]);
    await waitUntil(() => spool.count() === 0, 5000, "removed from the spool once acknowledged");
  });
});
