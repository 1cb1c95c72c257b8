// A Connect service shaped like the README's quick start (HTTP/2, requireApiKey, reportUsageFor
// in the handler, closeOnSignals), for the shutdown-under-load tests: `node --import tsx
// server-child.ts` with BILLING_CHILD = { port, drain, handlerMs, http1?, drainTimeoutMs? }.
// Each call waits handlerMs, reports its usage and answers with the record's id. Prints
// "listening <port>", then "started" as each handler starts (so the test knows which calls were
// in flight at the signal), and closeOnSignals' lines as "log <line>" (and on stderr, as usual).
// drain: true: closeOnSignals(billing, { drain: server }); false: closeOnSignals(billing) alone.
// http1: true: an HTTP/1.1 server (node:http) instead.
import { once } from "node:events";
import { createServer as createHttp1Server } from "node:http";
import { createServer } from "node:http2";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import {
  BillingClient,
  billingCaller,
  closeOnSignals,
  reportUsageFor,
  requireApiKey,
} from "../../src/index.js";
import { EchoService } from "../gen/test/v1/echo_pb.js";

const cfg = JSON.parse(process.env.BILLING_CHILD ?? "{}") as {
  port: number;
  drain: boolean;
  handlerMs: number;
  http1?: boolean;
  drainTimeoutMs?: number;
};
const billing = new BillingClient({
  brokerHost: "127.0.0.1",
  brokerPort: cfg.port,
  tls: false,
  heartbeatIntervalMs: 0,
  logger: () => {},
});
function routes(router: ConnectRouter) {
  router.service(EchoService, {
    async say(req, ctx) {
      process.stdout.write("started\n");
      await new Promise((r) => setTimeout(r, cfg.handlerMs));
      const id = await reportUsageFor(ctx, {
        module: "llm",
        model: "echo",
        usage: req.text.length,
      });
      return { text: id, appId: ctx.values.get(billingCaller)?.appId ?? "" };
    },
  });
}
const handler = connectNodeAdapter({
  routes,
  interceptors: [requireApiKey({ verify: async () => ({ appId: "app-drain" }) })],
});
const server = cfg.http1 === true ? createHttp1Server(handler) : createServer(handler);
const listening = once(server, "listening");
server.listen(0, "127.0.0.1");
closeOnSignals(billing, {
  ...(cfg.drain ? { drain: server, drainTimeoutMs: cfg.drainTimeoutMs } : {}),
  logger: (level, message) => {
    process.stdout.write(`log ${message}\n`);
    process.stderr.write(`[billing-sdk] ${level}: ${message}\n`);
  },
});
await billing.connect(10_000);
await listening;
process.stdout.write(`listening ${(server.address() as { port: number }).port}\n`);
