import { describe, expect, it } from "vitest";
import { BillingClient, BillingError } from "../../src/index.js";
import { useEmbeddedBroker } from "../helpers/embedded-broker.js";
import { freePort } from "../helpers/mosquitto.js";

// Metadata that references one huge string thousands of times stalled reportUsage while it was
// encoded (issue 9.5): its size is counted while it is validated, and refused early.

const suite = useEmbeddedBroker();
const { options } = suite;
const base = { apiKey: "key-1", module: "llm", model: "gpt-4", usage: 1 };

// ---- 5. the size budget is counted while validating ------------------------------------------

describe("maxRecordBytes is enforced before encoding", () => {
  for (const [name, size] of [
    ["one 100 KB string referenced 9,000 times", 100_000],
    // Each string alone fits maxRecordBytes (32,768): only counting the total refuses it early.
    ["one 30 KB string referenced 9,000 times", 30_000],
  ] as const) {
    it(`${name} is refused INVALID_ARGUMENT in < 500 ms`, async () => {
      const client = new BillingClient(options({ brokerPort: await freePort() }));
      const s = "x".repeat(size);
      const metadata = { refs: new Array<string>(9000).fill(s) };
      const t0 = performance.now();
      const err = await client.reportUsage({ ...base, metadata }).catch((e: unknown) => e);
      const ms = performance.now() - t0;
      expect(err).toBeInstanceOf(BillingError);
      expect(err).toMatchObject({ code: "INVALID_ARGUMENT" });
      expect(ms, "reportUsage took this long to refuse (ms)").toBeLessThan(500);
      expect(client.stats()).toMatchObject({ queued: 0, rejected: 1 });
    }, 60_000);
  }
});
