import type { Http2Session } from "node:http2";
import type { Server, Socket } from "node:net";

/** How often an HTTP/1.1 server's connections that went idle are closed while it drains. */
const IDLE_SWEEP_MS = 50;

/** An HTTP/1.1 server's own connection controls (Node ≥ 18.2); an HTTP/2 server has none. */
interface Http1Controls {
  closeIdleConnections(): void;
  closeAllConnections(): void;
}

const http1 = (server: Server): Http1Controls | undefined => {
  const s = server as Server & Partial<Http1Controls>;
  return typeof s.closeIdleConnections === "function" && typeof s.closeAllConnections === "function"
    ? (s as Server & Http1Controls)
    : undefined;
};

/**
 * Watches `server` (node:http, node:https or node:http2) from now on (until `unwatch()`), and
 * returns its graceful `drain`: stop accepting connections, let the calls in flight finish, and resolve once every
 * connection is closed (with undefined), or after `timeoutMs`, when the connections still open
 * are cut (with a sentence saying so).
 *
 * Node's `server.close()` alone does not do it: an HTTP/2 session stays open (its client may even
 * start new calls on it) until the client closes it, and an HTTP/1.1 keep-alive connection that
 * was busy stays open until its keep-alive timeout. So each HTTP/2 session gets a GOAWAY
 * (`session.close()`: its streams finish, no new ones start), and HTTP/1.1 connections are closed
 * as soon as they are idle. HTTP/2 sessions are known by the server's "session" event: only those
 * opened after this call are seen (install it in the tick that calls `listen()`, or before).
 */
export function serverDrain(
  server: Server,
  timeoutMs: number,
): { drain(): Promise<string | undefined>; unwatch(): void } {
  const sessions = new Set<Http2Session>();
  const sockets = new Set<Socket>();
  const onSession = (s: Http2Session) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
  };
  const onConnection = (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  };
  server.on("session", onSession);
  server.on("connection", onConnection);
  const unwatch = () => {
    server.off("session", onSession);
    server.off("connection", onConnection);
  };
  const drain = () =>
    new Promise<string | undefined>((resolve) => {
      const controls = http1(server);
      const sweep =
        controls === undefined
          ? undefined
          : setInterval(() => controls.closeIdleConnections(), IDLE_SWEEP_MS);
      const deadline = setTimeout(() => {
        const open = sockets.size;
        controls?.closeAllConnections();
        for (const s of sessions) s.destroy();
        for (const socket of sockets) socket.destroy();
        finish(
          `the server did not drain within ${timeoutMs} ms: ${open} connection${open === 1 ? "" : "s"} cut`,
        );
      }, timeoutMs);
      function finish(problem?: string): void {
        clearInterval(sweep);
        clearTimeout(deadline);
        resolve(problem);
      }
      // Called back once every connection is gone (with an error when it was not listening).
      server.close(() => finish());
      for (const s of sessions) if (!s.closed) s.close();
      controls?.closeIdleConnections();
    });
  return { drain, unwatch };
}
