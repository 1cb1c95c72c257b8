// A producer process for the fault tests: reports records through a spooled BillingClient and
// prints each id once reportUsage has resolved (i.e. once it is durable). Its arguments come as
// JSON in BILLING_CHILD: { port, ca, username, password, spool, count, mode }.
// mode "produce": report `count` records (forever when 0), printing ids; then close.
// mode "drain": only send what the spool holds, print "drained N", close.
import { BillingClient } from "../../src/index.js";
import { SqliteSpool } from "../../src/spool/index.js";

const cfg = JSON.parse(process.env.BILLING_CHILD ?? "{}") as {
  port: number;
  ca: string;
  username: string;
  password: string;
  spool: string;
  count: number;
  mode: "produce" | "drain";
};

let client: BillingClient;
try {
  client = new BillingClient({
    brokerHost: "127.0.0.1",
    brokerPort: cfg.port,
    ca: cfg.ca,
    username: cfg.username,
    password: cfg.password,
    heartbeatIntervalMs: 0,
    reconnectBaseMs: 50,
    reconnectMaxMs: 500,
    spool: new SqliteSpool({ path: cfg.spool }),
    logger: () => {},
  });
} catch (err) {
  console.log(`error ${(err as { code?: string }).code}: ${(err as Error).message}`);
  process.exit(1);
}

if (cfg.mode === "drain") {
  const n = client.stats().queued;
  await client.flush(60_000);
  await client.close();
  console.log(`drained ${n}`);
} else {
  console.log("ready");
  for (let i = 0; cfg.count === 0 || i < cfg.count; i++) {
    const id = await client.reportUsage({
      apiKey: "child-key",
      module: "llm",
      model: "m",
      usage: i,
    });
    process.stdout.write(`${id}\n`);
  }
  await client.close(30_000);
  console.log("done");
}
