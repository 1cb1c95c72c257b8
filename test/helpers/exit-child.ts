// A job that reports records and ends without close(), for the exit-warning test:
// `node --import tsx exit-child.ts <port> <n> [spoolPath]`. The broker at <port> is unreachable,
// so the records stay queued when the event loop empties and the process exits.
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
