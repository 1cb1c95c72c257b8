import { once } from "node:events";
import { createServer, type Http2Session } from "node:http2";
import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { billingCaller, reportUsageFor } from "../../src/index.js";
import { EchoService } from "../gen/test/v1/echo_pb.js";

/** How many times each handler body started: proves a refused call never reached it. */
export const handlerRuns = { count: 0 };

export function echoRoutes(router: ConnectRouter) {
  router.service(EchoService, {
    async say(req, ctx) {
      handlerRuns.count++;
      const caller = ctx.values.get(billingCaller);
      await reportUsageFor(ctx, { module: "llm", model: "echo", usage: req.text.length }).catch(
        () => {},
      );
      return { text: req.text, appId: caller?.appId ?? "" };
    },
    async *sayMany(req, ctx) {
      handlerRuns.count++;
      for (let i = 0; i < 3; i++)
        yield { text: `${req.text}${i}`, appId: ctx.values.get(billingCaller)?.appId ?? "" };
    },
    async collect(reqs) {
      handlerRuns.count++;
      let text = "";
      for await (const r of reqs) text += r.text;
      return { text };
    },
    async *chat(reqs) {
      handlerRuns.count++;
      for await (const r of reqs) yield { text: r.text };
    },
    async health() {
      return { text: "ok" };
    },
  });
}

/** The echo service on a loopback HTTP/2 server (see startServer). */
export function startEchoServer(interceptors: Interceptor[]) {
  return startServer(echoRoutes, interceptors);
}

/** A connect-node HTTP/2 server on a loopback port 0, serving Connect, gRPC and gRPC-web. */
export async function startServer(
  routes: (router: ConnectRouter) => void,
  interceptors: Interceptor[],
) {
  const sessions = new Set<Http2Session>();
  const server = createServer(connectNodeAdapter({ routes, interceptors }));
  server.on("session", (s) => {
    sessions.add(s);
    s.on("close", () => sessions.delete(s));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as { port: number }).port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    async close() {
      // HTTP/2 server.close() waits for open sessions: end them first.
      for (const s of sessions) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
