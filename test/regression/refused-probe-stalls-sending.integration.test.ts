import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createUsageConsumer, type UsageConsumer } from "../../src/consumer/index.js";
import { BillingClient, BillingError } from "../../src/index.js";
import { plainClientOptions } from "../helpers/fixtures.js";
import { Mosquitto } from "../helpers/mosquitto.js";
import { mosquittoAvailable } from "../helpers/require-broker.js";
import { waitUntil } from "../helpers/time.js";

// While the broker answers PUBACK 0x10 (no subscriber), the pipeline sends one batch at a time
// (the probe). A probe refused for another reason (here 0x87: publishing was not authorized for
// a while) once left the pipeline waiting for a 0x10 that never came: nothing was sent again
// until the connection dropped, flush() blamed the missing subscriber, and close() without a
// spool lost every record.
describe.runIf(mosquittoAvailable())(
  "a probe refused during a 0x10 episode (real mosquitto)",
  () => {
    let broker: Mosquitto;
    beforeAll(async () => {
      broker = await Mosquitto.start({ acl: "topic readwrite #\n" });
    });
    afterAll(async () => {
      await broker?.close();
    });

    it("publishing refused for a while (ACL, SIGHUP): flush() names the refusal; once allowed and subscribed, every record arrives once", async () => {
      const logs: string[] = [];
      const client = new BillingClient(
        plainClientOptions(broker.plainPort, {
          topicPrefix: "probe-refused",
          logger: (level, message) => logs.push(`${level}: ${message}`),
        }),
      );
      const seen = new Map<string, number>();
      let consumer: UsageConsumer | undefined;
      try {
        await client.connect(5000);
        const ids: string[] = [];
        for (let i = 0; i < 100; i++) {
          ids.push(await client.reportUsage({ apiKey: "k", module: "llm", model: "m", usage: 1 }));
        }
        await waitUntil(() => client.stats().heldNoSubscriber > 0, 5000, "a PUBACK 0x10");
        broker.setAcl("topic read #\n"); // publishing is no longer authorized: PUBACK 0x87
        await waitUntil(() => client.stats().retrying > 0, 10_000, "the probe refused");
        const flushed = await client.flush(300).then(
          () => undefined,
          (err: unknown) => err,
        );
        expect(flushed).toBeInstanceOf(BillingError);
        expect((flushed as BillingError).message).toMatch(
          /not yet acknowledged after 300 ms: refused records are retried after a growing delay \(the last reason: PUBACK reason code 135 \(Publish error: Not authorized\); \d+ waiting now\)$/,
        );
        expect((flushed as BillingError).message).not.toMatch(/no subscriber/);
        broker.setAcl("topic readwrite #\n");
        // The ingest starts (the first subscriber): the next probe is delivered, the rest follows.
        consumer = createUsageConsumer({
          brokerHost: "127.0.0.1",
          brokerPort: broker.plainPort,
          tls: false,
          topicPrefix: "probe-refused",
          clientId: "ingest-probe-refused",
          logger: () => {},
          onRecord: (r) => {
            seen.set(r.id, (seen.get(r.id) ?? 0) + 1);
          },
        });
        await consumer.ready;
        await client.flush(20_000);
        await waitUntil(() => seen.size >= 100, 5000, "100 records at the consumer");
        expect(new Set(seen.keys())).toEqual(new Set(ids));
        expect([...seen.values()].every((n) => n === 1)).toBe(true);
        expect(client.stats()).toMatchObject({ published: 100, queued: 0, reconnects: 0 });
        expect(logs.some((l) => /has a subscriber again/.test(l))).toBe(true);
      } finally {
        await consumer?.close();
        await client.close(1000).catch(() => {});
      }
    });
  },
);
