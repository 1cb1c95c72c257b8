import { describe, expect, it } from "vitest";
import { BillingClient, type BillingClientOptions, BillingError } from "../../src/index.js";
import { useEmbeddedBroker } from "../helpers/embedded-broker.js";
import { freePort } from "../helpers/mosquitto.js";

// Large records queued while the broker was away could take any amount of memory (issue 9.4):
// the queue is bounded in bytes too (maxQueuedBytes).

const suite = useEmbeddedBroker();
const { options } = suite;
const base = { apiKey: "key-1", module: "llm", model: "gpt-4", usage: 1 };

// ---- 4. the queue is bounded in bytes --------------------------------------------------------

describe("maxQueuedBytes", () => {
  // ~30 KB encoded, under the default maxRecordBytes (32,768).
  const blob = "x".repeat(30_000);
  const fill = async (client: BillingClient, upTo: number) => {
    for (let i = 0; i < upTo; i++) {
      const err = await client.reportUsage({ ...base, usage: i, metadata: { blob } }).then(
        () => undefined,
        (e: unknown) => e,
      );
      if (err !== undefined) return { accepted: i, err };
    }
    return { accepted: upTo, err: undefined };
  };

  it("maxQueuedBytes: 1_000_000 refuses the ~34th record of 30 KB with QUEUE_FULL, counted in rejected", async () => {
    // A closed port: the broker is unreachable, everything stays queued.
    const client = new BillingClient(
      options({ brokerPort: await freePort(), maxQueuedBytes: 1_000_000 } as BillingClientOptions),
    );
    const { accepted, err } = await fill(client, 100);
    expect(err, `no refusal after ${accepted} records of 30 KB`).toBeInstanceOf(BillingError);
    expect(err).toMatchObject({ code: "QUEUE_FULL" });
    expect(accepted).toBeGreaterThanOrEqual(33);
    expect(accepted).toBeLessThanOrEqual(34);
    expect(client.stats()).toMatchObject({ queued: accepted, rejected: 1 });
  });

  it("by default (64 MiB) no more than ~2,200 records of 30 KB are queued", async () => {
    const client = new BillingClient(options({ brokerPort: await freePort() }));
    const { accepted, err } = await fill(client, 2600);
    expect(err, `no refusal after ${accepted} records of 30 KB`).toBeInstanceOf(BillingError);
    expect(err).toMatchObject({ code: "QUEUE_FULL" });
    // 67,108,864 / ~30,100 bytes ≈ 2,229.
    expect(accepted).toBeGreaterThanOrEqual(2150);
    expect(accepted).toBeLessThanOrEqual(2240);
    expect(client.stats()).toMatchObject({ queued: accepted, rejected: 1 });
  }, 30_000);
});
