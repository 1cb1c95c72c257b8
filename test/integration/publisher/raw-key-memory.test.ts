import { randomBytes } from "node:crypto";
import { afterAll, expect, it } from "vitest";
import { BillingClient, hashApiKey } from "../../../src/index.js";
import { freePort } from "../../helpers/mosquitto.js";

// No raw API key outlives the call that was given it. Before, hashApiKey cached up to 4,096 raw
// keys: 4,000 keys of 15 KB kept 61 MB alive. Measured after a forced GC (this suite runs with
// --expose-gc).
const gc = (globalThis as { gc?: () => void }).gc;
let client: BillingClient | undefined;
afterAll(async () => client?.close(0).catch(() => {}));

const heapAfterGc = () => {
  gc?.();
  gc?.();
  return process.memoryUsage().heapUsed;
};

it.runIf(gc !== undefined)(
  "hashing 4,000 distinct 15 KB keys (and reporting 50) keeps none of them alive",
  async () => {
    client = new BillingClient({
      brokerHost: "127.0.0.1",
      brokerPort: await freePort(), // nobody there: records wait in the queue, as fingerprints
      tls: false,
      heartbeatIntervalMs: 0,
      reconnectBaseMs: 60_000,
      logger: () => {},
    });
    const before = heapAfterGc();
    for (let i = 0; i < 4000; i++) {
      // 15,000 characters each, made fresh: 60 MB in all.
      expect(hashApiKey(randomBytes(7500).toString("hex"))).toMatch(/^[0-9a-f]{64}$/);
    }
    for (let i = 0; i < 50; i++) {
      // reportUsage takes keys of up to 1,024 characters.
      const apiKey = randomBytes(512).toString("hex");
      await client.reportUsage({ apiKey, module: "m", model: "m", usage: 1 });
    }
    const grown = heapAfterGc() - before;
    expect(client.stats().queued).toBe(50);
    // 50 queued records cost a few KB; 4,000 kept keys would cost 60 MB.
    expect(grown).toBeLessThan(10 * 1024 * 1024);
  },
);
