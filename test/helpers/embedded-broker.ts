import { afterAll, afterEach, beforeAll } from "vitest";
import type { UsageRecord } from "../../gen/billing/v1/usage_pb.js";
import { type BillingClientOptions, getBillingClient } from "../../src/index.js";
import { AedesBroker, type AedesOptions } from "./aedes-broker.js";
import { decodeRecords, testPublicKeys } from "./fixtures.js";

/**
 * An embedded Aedes broker for one test file (started before it, closed after it), with what
 * every such file needs: client options for it with fast retries, a captured log, the records
 * it received; after each test the process-wide client is closed and the captures cleared.
 */
export function useEmbeddedBroker(aedes: AedesOptions = {}) {
  let broker: AedesBroker | undefined;
  const logs: Array<{ level: string; msg: string }> = [];
  // One function for every client, so equal options stay equal for the singleton.
  const capture = (level: string, msg: string) => {
    logs.push({ level, msg });
  };
  beforeAll(async () => {
    broker = await AedesBroker.create(aedes);
  });
  afterAll(async () => broker?.close());
  afterEach(async () => {
    await getBillingClient()
      ?.close(100)
      .catch(() => {});
    logs.length = 0;
    broker?.published.splice(0);
  });
  const get = () => {
    if (broker === undefined) throw new Error("the embedded broker starts in beforeAll");
    return broker;
  };
  return {
    get broker(): AedesBroker {
      return get();
    },
    logs,
    /** Client options for this broker: plain MQTT, fast retries, no heartbeats, logs captured. */
    options: (extra: BillingClientOptions = {}): BillingClientOptions => ({
      brokerHost: "127.0.0.1",
      brokerPort: get().port,
      tls: false,
      reconnectBaseMs: 50,
      reconnectMaxMs: 200,
      heartbeatIntervalMs: 0,
      keyUpdatePublicKeys: testPublicKeys,
      logger: capture,
      ...extra,
    }),
    /** The records the broker received on billing/report, in order. */
    received: (): UsageRecord[] => decodeRecords(get().payloads("billing/report")),
  };
}
