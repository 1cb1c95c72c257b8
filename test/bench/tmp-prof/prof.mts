import { Mosquitto } from "/work/wt-13/test/helpers/mosquitto.js";

const { BillingClient } = await import("/work/wt-13/dist/src/index.js");
const m = await Mosquitto.start({ extra: ["max_inflight_messages 1000"] });
const N = 100_000;
const usage = {
  apiKey: "bench-key",
  module: "llm",
  model: "gpt-4",
  usage: 150,
  metadata: { prompt_tokens: 100, completion_tokens: 50, temperature: 0.7 },
};
for (let round = 0; round < 3; round++) {
  const client = new BillingClient({
    brokerHost: "127.0.0.1",
    brokerPort: m.plainPort,
    tls: false,
    heartbeatIntervalMs: 0,
    maxQueued: N,
    logger: () => {},
  });
  await client.connect();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const calls = new Array(N);
  for (let i = 0; i < N; i++) calls[i] = client.reportUsage(usage);
  await Promise.all(calls);
  const c1 = process.cpuUsage(c0);
  await client.flush(120000);
  const c = process.cpuUsage(c0);
  console.log(
    `rate ${Math.round(N / ((performance.now() - t0) / 1000))} cpu/rec ${((c.user + c.system) / N).toFixed(1)} calls-only ${((c1.user + c1.system) / N).toFixed(1)}`,
    client.stats().published,
  );
  await client.close();
}
await m.close();
