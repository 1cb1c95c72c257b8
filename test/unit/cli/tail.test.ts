import { describe, expect, it } from "vitest";
import { main } from "../../../src/cli/main.js";
import { BillingClient } from "../../../src/index.js";
import { captureIo } from "../../helpers/cli-io.js";
import { useEmbeddedBroker } from "../../helpers/embedded-broker.js";
import { sleep, waitUntil } from "../../helpers/time.js";

const suite = useEmbeddedBroker();
const { options } = suite;
const base = { apiKey: "key-1", module: "llm", model: "gpt-4", usage: 1 };

// Issue 9.8: "connection lost" was printed after a clean stop.
// ---- 8. tail says "connection lost" only when it is ------------------------------------------

describe("billing-sdk tail", () => {
  const io = captureIo;
  const conn = () => ["--broker", `mqtt://127.0.0.1:${suite.broker.port}`];
  const ready = (a: ReturnType<typeof io>) =>
    waitUntil(() => a.err.some((l) => l.startsWith("tail: listening")), 5000, "tail ready");

  it('does not print "connection lost" after --count is reached, nor after Ctrl-C', async () => {
    const a = io();
    const counted = main(["tail", "--count", "2", ...conn()], a.io);
    await ready(a);
    const client = new BillingClient(options());
    await client.reportUsage({ ...base, usage: 1 });
    await client.reportUsage({ ...base, usage: 2 });
    await client.flush(5000);
    expect(await counted).toBe(0);
    await sleep(200); // let late events arrive
    expect(a.out).toHaveLength(2);
    expect.soft(a.err, "stderr after --count 2 was reached").not.toContain("tail: connection lost");

    const b = io();
    const interrupted = main(["tail", ...conn()], b.io);
    await ready(b);
    b.interrupt();
    expect(await interrupted).toBe(0);
    await sleep(200);
    expect.soft(b.err, "stderr after Ctrl-C").not.toContain("tail: connection lost");

    // Positive control: a connection that is really lost is reported, with exit code 1.
    const c = io();
    const lost = main(["tail", ...conn()], c.io);
    await ready(c);
    await suite.broker.stop();
    try {
      expect(await lost).toBe(1);
      expect(c.err).toContain("tail: connection lost");
    } finally {
      await suite.broker.start();
    }
  });

  // Any subscriber of <prefix>/report that is not the ingest turns the broker's "no subscriber"
  // answer (PUBACK 0x10) off: records reported meanwhile go to tail only. tail says so.
  it("warns at start, on stderr and in --help, that it counts as a subscriber of <prefix>/report", async () => {
    const a = io();
    const running = main(["tail", "--prefix", "acme", ...conn()], a.io);
    await ready(a);
    expect(a.err[0]).toBe(
      "tail: warning: while tail runs, the broker counts it as a subscriber of acme/report: records reported while no ingest session exists go to tail only and are not stored; run the ingest first (persistent session)",
    );
    expect(a.out).toEqual([]);
    a.interrupt();
    expect(await running).toBe(0);
    const help = io();
    expect(await main(["tail", "--help"], help.io)).toBe(0);
    expect(help.out.join(" ").replaceAll("\n", " ")).toMatch(
      /While tail runs, the broker counts it as a subscriber of <prefix>\/report, so it no longer answers "no subscriber" \(MQTT 5 PUBACK 0x10\) to producers: records reported while no ingest session exists go to tail only and are not stored\. Run the ingest first/,
    );
  });
});
