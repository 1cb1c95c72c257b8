// A job that reports records and ends without close(), for the exit-warning test:
// `node --import tsx exit-child.ts <port> <n> [spoolPath] [mode]`. The broker at <port> is
// unreachable, so the records stay queued when the event loop empties and the process exits.
// Modes: "exit-while-closing" (exits while close() flushes), "closed" (close() ran out of time
// and settled before the exit; prints how it settled).
import { BillingClient } from "../../src/index.js";
import { SqliteSpool } from "../../src/spool/index.js";

const [port, n, spoolArg, mode] = process.argv.slice(2);
const spoolPath = spoolArg === "-" ? undefined : spoolArg;
const client = new BillingClient({
  brokerHost: "127.0.0.1",
  brokerPort: Number(port),
  tls: false,
  heartbeatIntervalMs: 0,
  ...(spoolPath === undefined ? {} : { spool: new SqliteSpool({ path: spoolPath }) }),
});
for (let i = 0; i < Number(n); i++) {
  await client.reportUsage({ apiKey: "k", module: "llm", model: "m", usage: i + 1 });
}
console.log(`reported ${n}`);
if (mode === "exit-while-closing") {
  // An application's own handler that exits while close() is still flushing.
  client.close(10_000).catch(() => {});
  setTimeout(() => process.exit(0), 300);
}
if (mode === "closed") {
  await client.close(200).then(
    () => console.log("close resolved"),
    (err: Error) => console.log(`close rejected: ${err.message}`),
  );
}
