// A service that reports records in a loop until it gets a signal, for the shutdown tests:
// `node --import tsx signal-child.ts` with BILLING_CHILD = { port, mode, timeoutMs }. Prints each
// record's id once reportUsage has resolved, and "ready" after the first 200.
// mode "on": closeOnSignals(client) (the one line of the README's quick starts).
// mode "off": nothing: the signal's default action ends the process.
// mode "own": closeOnSignals(client, { exit: "none" }) and the application's own SIGTERM
// listener, which awaits close() and exits with status 3 ("once": the same with process.once).
// mode "se-before" / "se-after": closeOnSignals(client) beside a listener that behaves like the
// signal-exit package (used by many tools): when it is the last listener of the signal, it
// removes itself and raises the signal again; installed before or after the helper.
import { BillingClient, closeOnSignals } from "../../src/index.js";

const cfg = JSON.parse(process.env.BILLING_CHILD ?? "{}") as {
  port: number;
  mode: "on" | "off" | "own" | "once" | "se-before" | "se-after";
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
function signalExitLike(): void {
  const onSig = () => {
    if (process.listeners("SIGTERM").length === 1) {
      process.off("SIGTERM", onSig);
      console.log("signal-exit-like: raising SIGTERM");
      process.kill(process.pid, "SIGTERM");
    }
  };
  process.on("SIGTERM", onSig);
}
const own = cfg.mode === "own" || cfg.mode === "once";
if (cfg.mode === "se-before") signalExitLike();
if (cfg.mode !== "off") {
  closeOnSignals(client, { timeoutMs: cfg.timeoutMs, exit: own ? "none" : "signal" });
}
if (cfg.mode === "se-after") signalExitLike();
if (own) {
  process[cfg.mode === "once" ? "once" : "on"]("SIGTERM", () => {
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
