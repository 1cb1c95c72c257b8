// A service that reports 10 records and then closes: `node --import tsx close-child.ts PORT
// CLOSE_MS`. Prints the outcome of close(); the test measures when the process exits by itself.
import { BillingClient } from "../../src/index.js";

const [port, closeMs] = process.argv.slice(2).map(Number);
const client = new BillingClient({
  brokerHost: "127.0.0.1",
  brokerPort: port as number,
  tls: false,
  heartbeatIntervalMs: 0,
  logger: () => {},
});
await client.connect(5000);
for (let i = 0; i < 10; i++) {
  await client.reportUsage({ apiKey: "k", module: "llm", model: "m", usage: i });
}
await client.close(closeMs).then(
  () => console.log("close resolved"),
  (err: Error) => console.log(`close rejected: ${err.message}`),
);
