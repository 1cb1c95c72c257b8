// A service that reports records in a loop until it gets a signal, for the shutdown tests:
// `node --import tsx signal-child.ts` with BILLING_CHILD = { port, mode, timeoutMs }. Prints each
// record's id once reportUsage has resolved, and "ready" after the first 200.
// mode "on": closeOnSignals(client) (the one line of the README's quick starts).
// mode "off": nothing: the signal's default action ends the process.
// mode "own": closeOnSignals(client) and the application's own SIGTERM listener, which awaits
// close() and exits with status 3.
import { BillingClient, closeOnSignals } from "../../src/index.js";

const cfg = JSON.parse(process.env.BILLING_CHILD ?? "{}") as {
  port: number;
  mode: "on" | "off" | "own";
  timeoutMs: number;
};
const client = new BillingClient({
  brokerHost: "127.0.0.1",
  brokerPort: cfg.port,
  tls: false,
  heartbeatIntervalMs: 0,
  inFlightWindow: 50,
  logger: () => {},
});
if (cfg.mode !== "off") closeOnSignals(client, { timeoutMs: cfg.timeoutMs });
if (cfg.mode === "own") {
  process.on("SIGTERM", () => {
    void client.close().finally(() => {
      console.log(`own listener: exit 3 with ${client.stats().queued} queued`);
      process.exit(3);
    });
  });
}
await client.connect(10_000);
let out = "";
for (let i = 0; ; i++) {
  try {
    out += `${await client.reportUsage({ apiKey: "k", module: "llm", model: "m", usage: i })}\n`;
  } catch (err) {
    if ((err as { code?: string }).code === "CLOSED") break;
    if ((err as { code?: string }).code !== "QUEUE_FULL") throw err;
  }
  if (i % 50 === 49) {
    process.stdout.write(out);
    out = "";
    if (i === 199) process.stdout.write("ready\n");
    // Yield to the event loop: the client publishes, the signal is delivered.
    await new Promise((r) => setImmediate(r));
  }
}
process.stdout.write(out);
