// npm run bench (part 2): the cost of requireApiKey() on a trivial unary RPC over HTTP/2.
// Two connect-node servers in this process, identical but for the interceptor; a Connect
// client makes the same calls to each (64 in flight), rounds alternating; the median round
// of each is printed, and the median of the per-round ratios, next to the same ratio between two
// identical plain servers: the noise floor of this machine.
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";

// The compiled package (as users run it; `npm run bench` builds first).
const dist = new URL("../../dist/", import.meta.url).href;
const { BillingClient, hashApiKey, requireApiKey } = (await import(
  `${dist}src/index.js`
)) as typeof import("../../src/index.js");
const { KeyState, KeyStatusSchema, KeyUpdateSchema } = (await import(
  `${dist}gen/billing/v1/usage_pb.js`
)) as typeof import("../../gen/billing/v1/usage_pb.js");

import { EchoService } from "../gen/test/v1/echo_pb.js";
import { startEchoServer } from "../helpers/echo-server.js";
import { freePort } from "../helpers/mosquitto.js";

const CALLS = Number(process.env.BENCH_CALLS ?? 5_000);
const CONCURRENCY = 64;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 21);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

// The key list, loaded as a pushed snapshot would load it (no broker needed for this part).
const billing = new BillingClient({
  brokerPort: await freePort(),
  tls: false,
  heartbeatIntervalMs: 0,
  reconnectBaseMs: 60_000,
  logger: () => {},
});
billing.keys.apply(
  create(KeyUpdateSchema, {
    snapshot: true,
    keys: Array.from({ length: 10_000 }, (_, i) =>
      create(KeyStatusSchema, {
        apiKeySha256: hashApiKey(`key-${i}`),
        appId: `app-${i}`,
        state: KeyState.ACTIVE,
      }),
    ),
  }),
);

const plain = await startEchoServer([]);
const control = await startEchoServer([]); // a second plain server: the noise floor
const guarded = await startEchoServer([requireApiKey()]);

async function round(url: string): Promise<number> {
  const client = createClient(
    EchoService,
    createConnectTransport({ baseUrl: url, httpVersion: "2" }),
  );
  const headers = { "api-key": "key-4242" };
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < CALLS) {
        next++;
        const res = await client.health({ text: "x" }, { headers });
        if (res.text !== "ok") throw new Error("bad answer");
      }
    }),
  );
  return CALLS / ((performance.now() - t0) / 1000);
}

// The interceptor alone, in-process: a ready request and a `next` that answers at once.
async function interceptorAlone(): Promise<number> {
  const { createContextValues } = await import("@connectrpc/connect");
  const interceptor = requireApiKey()(async () => ({}) as never);
  const req = {
    service: EchoService,
    method: EchoService.method.say,
    header: new Headers({ "api-key": "key-4242" }),
    contextValues: createContextValues(),
  } as never;
  const n = 200_000;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await interceptor(req);
  return ((performance.now() - t0) * 1000) / n;
}

try {
  const without: number[] = [];
  const withIt: number[] = [];
  const ratios: number[] = [];
  const controlRatios: number[] = [];
  await round(plain.url);
  await round(control.url);
  await round(guarded.url); // warm-up
  for (let r = 0; r < ROUNDS; r++) {
    // The three servers in a rotating order, so that drift in the machine's speed cancels out.
    const order = [plain, control, guarded];
    const rates = new Map<string, number>();
    for (let k = 0; k < 3; k++) {
      const s = order[(r + k) % 3] as typeof plain;
      rates.set(s.url, await round(s.url));
    }
    const base = rates.get(plain.url) as number;
    without.push(base);
    withIt.push(rates.get(guarded.url) as number);
    ratios.push((rates.get(guarded.url) as number) / base);
    controlRatios.push((rates.get(control.url) as number) / base);
  }
  const a = median(without);
  const b = median(withIt);
  const ratio = median(ratios);
  const f = (n: number) => Math.round(n).toLocaleString("en-US");
  console.log(
    `unary RPC over HTTP/2, ${CALLS} calls, ${CONCURRENCY} in flight, ${ROUNDS} rounds (median)`,
  );
  console.log(`without interceptor        : ${f(a)} calls/s  (${(1e6 / a).toFixed(1)} µs/call)`);
  console.log(`with requireApiKey()       : ${f(b)} calls/s  (${(1e6 / b).toFixed(1)} µs/call)`);
  console.log(
    `ratio with/without         : ${ratio.toFixed(3)}   (median of per-round ratios: overhead ${((1 - ratio) * 100).toFixed(1)}%; target <= 2%)`,
  );
  console.log(
    `control: plain/plain       : ${median(controlRatios).toFixed(3)}   (two identical servers: the noise floor of the ratio above)`,
  );
  console.log(
    `interceptor alone          : ${(await interceptorAlone()).toFixed(2)} µs/call (in-process, 10,000 known keys)`,
  );
} finally {
  await plain.close();
  await control.close();
  await guarded.close();
  await billing.close(0).catch(() => {});
}
