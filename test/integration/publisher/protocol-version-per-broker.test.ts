import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createUsageConsumer, type UsageConsumer } from "../../../src/consumer/index.js";
import { BillingClient, BillingError } from "../../../src/index.js";
import { AedesBroker } from "../../helpers/aedes-broker.js";
import { plainClientOptions } from "../../helpers/fixtures.js";
import { Mosquitto } from "../../helpers/mosquitto.js";
import { mosquittoAvailable } from "../../helpers/require-broker.js";
import { waitUntil } from "../../helpers/time.js";

// The MQTT version is chosen per broker: each is tried with 5 first, and only the one that
// refuses 5 is spoken to in 3.1.1. A client that once fell back to a 3.1.1-only broker (Aedes
// here) speaks 5 again when it fails over to an MQTT 5 broker (mosquitto), so it sees PUBACK
// 0x10 (no subscriber) there. Running on 3.1.1 is a warning: records sent while no ingest
// session exists are then dropped by the broker, unseen.
describe.runIf(mosquittoAvailable())("the MQTT version, per broker (Aedes and mosquitto)", () => {
  let mosquitto: Mosquitto;
  let aedes: AedesBroker;
  beforeAll(async () => {
    mosquitto = await Mosquitto.start();
    aedes = await AedesBroker.create();
  });
  afterAll(async () => {
    await aedes?.close();
    await mosquitto?.close();
  });

  it("after a 3.1.1 fallback broker, an MQTT 5 broker is spoken to in 5 (0x10 seen); each switch to 3.1.1 warns", async () => {
    await mosquitto.stop(); // the primary is down: the client starts on the fallback, Aedes
    const logs: string[] = [];
    const client = new BillingClient(
      plainClientOptions(mosquitto.plainPort, {
        fallbackBrokers: [{ host: "127.0.0.1", port: aedes.port }],
        topicPrefix: "per-broker",
        logger: (level, message) => logs.push(`${level}: ${message}`),
      }),
    );
    let consumer: UsageConsumer | undefined;
    const onAedes = () => client.isConnected() && client.stats().broker.endsWith(`:${aedes.port}`);
    const onMosquitto = () =>
      client.isConnected() && client.stats().broker.endsWith(`:${mosquitto.plainPort}`);
    const warnings = () => logs.filter((l) => l.includes("running on MQTT 3.1.1"));
    try {
      await waitUntil(onAedes, 10_000, "a connection to Aedes");
      expect(client.stats().protocolVersion).toBe(4);
      expect(warnings()).toEqual([
        `warn: running on MQTT 3.1.1 with 127.0.0.1:${aedes.port} (it refused MQTT 5): a 3.1.1 broker cannot report "no subscriber" (PUBACK reason 0x10), so records sent on per-broker/report while no ingest session exists are dropped by the broker, and counted published. Start the ingest with a persistent session (billing-sdk ingest) before the producers, or use an MQTT 5 broker`,
      ]);

      await mosquitto.start();
      await aedes.stop();
      await waitUntil(onMosquitto, 10_000, "the failover to mosquitto");
      expect(client.stats().protocolVersion).toBe(5);
      const ids: string[] = [];
      for (let i = 0; i < 100; i++) {
        ids.push(await client.reportUsage({ apiKey: "k", module: "llm", model: "m", usage: 1 }));
      }
      // No subscriber on mosquitto yet: answered 0x10, so held, not "published".
      const flushed = await client.flush(500).catch((err: unknown) => err);
      expect(flushed).toBeInstanceOf(BillingError);
      expect((flushed as BillingError).message).toMatch(/no subscriber on per-broker\/report/);
      expect(client.stats().published).toBe(0);
      const seen = new Map<string, number>();
      consumer = createUsageConsumer({
        brokerHost: "127.0.0.1",
        brokerPort: mosquitto.plainPort,
        tls: false,
        topicPrefix: "per-broker",
        clientId: "ingest-per-broker",
        logger: () => {},
        onRecord: (r) => {
          seen.set(r.id, (seen.get(r.id) ?? 0) + 1);
        },
      });
      await consumer.ready;
      await client.flush(10_000);
      await waitUntil(() => seen.size >= 100, 5000, "the 100 records at the ingest");
      expect(new Set(seen.keys())).toEqual(new Set(ids));
      expect(warnings()).toHaveLength(1); // the MQTT 5 connection did not warn

      // Back on Aedes: 3.1.1 again for that broker, and warned again.
      await aedes.start();
      await mosquitto.stop();
      await waitUntil(onAedes, 10_000, "the failover back to Aedes");
      expect(client.stats().protocolVersion).toBe(4);
      expect(warnings()).toHaveLength(2);
    } finally {
      await consumer?.close();
      await client.close(500).catch(() => {});
    }
  });
});
