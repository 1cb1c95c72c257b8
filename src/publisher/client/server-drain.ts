import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2Session, ServerHttp2Stream } from "node:http2";
import { Server, type Socket } from "node:net";

/**
 * How often an HTTP/1.1 server's idle connections are closed while it drains, the first time
 * this long after the drain began: a client that kept a connection alive may be sending its next
 * call on it right then (closed under it, the call fails with ECONNRESET or EPIPE); given this
 * long, the call arrives and is answered, with `Connection: close`.
 */
const IDLE_SWEEP_MS = 100;

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

const connections = (n: number) => `${n} connection${n === 1 ? "" : "s"}`;

/** What `serverDrain` returns. */
export interface ServerDrain {
  /**
   * Said once, at once, when what the drain can do is limited: an HTTP/2 server already listening
   * (the sessions it opened before are not seen). Undefined otherwise.
   */
  readonly warning: string | undefined;
  /** Drains the server: resolves with undefined, or at the deadline with what was cut. */
  drain(): Promise<string | undefined>;
  /** Stops watching the server (when no drain will come). */
  unwatch(): void;
}

/**
 * What the drain knows of a server, from the events it watches: HTTP/2 sessions, connections,
 * and HTTP/1.1 responses not yet finished. While draining, every HTTP/1.1 response not yet sent
 * says `Connection: close` (the client takes its next call elsewhere; Node then closes the
 * connection once the response is sent), and every HTTP/2 session gets a GOAWAY.
 */
class ServerWatch {
  /** HTTP/2 sessions open: opened since, or seen through a stream since. */
  readonly sessions = new Set<Http2Session>();
  /** Those of `sessions` opened before the watch (their sockets are not in `sockets`). */
  readonly earlier = new Set<Http2Session>();
  /** Connections opened since. */
  readonly sockets = new Set<Socket>();
  /** HTTP/1.1 responses not yet finished (of requests that arrived since). */
  readonly responses = new Set<ServerResponse>();
  /** An HTTP/1.1 server's connection controls; undefined for HTTP/2. */
  readonly controls: Http1Controls | undefined;
  /** HTTP/2 and already listening: sessions opened before are seen only when they start a call. */
  readonly unseen: boolean;
  private draining = false;

  constructor(readonly server: Server) {
    this.controls = http1(server);
    this.unseen = this.controls === undefined && server.listening;
    server.on("session", this.onSession);
    server.on("connection", this.onConnection);
    // First, so a response a handler sends at once is marked too. Never on an HTTP/2 server: a
    // "request" listener turns on its compatibility API.
    if (this.controls !== undefined) server.prependListener("request", this.onRequest);
    else server.on("stream", this.onStream);
  }

  unwatch(): void {
    this.server.off("session", this.onSession);
    this.server.off("connection", this.onConnection);
    this.server.off("request", this.onRequest);
    this.server.off("stream", this.onStream);
  }

  /** From now on: `Connection: close` on each HTTP/1.1 response, a GOAWAY to each session. */
  startDraining(): void {
    this.draining = true;
    for (const res of this.responses) if (!res.headersSent) res.setHeader("Connection", "close");
    for (const s of this.sessions) if (!s.closed) s.close();
  }

  /** The connections open now (those opened before the watch included). */
  open(): Promise<number> {
    return new Promise((resolve) => this.server.getConnections((_err, n) => resolve(n ?? 0)));
  }

  /** Cuts every connection it can reach; says how many, and how many it could not. */
  async cut(): Promise<string> {
    const open = await this.open();
    const reached = this.controls === undefined ? this.sockets.size + this.earlier.size : open;
    this.controls?.closeAllConnections();
    for (const s of this.sessions) s.destroy();
    for (const socket of this.sockets) socket.destroy();
    const left = Math.max(0, open - reached);
    if (left === 0) return `${connections(open)} cut`;
    return `${connections(open - left)} cut, ${left} left open (opened before closeOnSignals() was called, ${left === 1 ? "it" : "they"} cannot be reached: ${left === 1 ? "it ends" : "they end"} with the process)`;
  }

  private readonly onSession = (s: Http2Session) => this.addSession(s, false);
  private readonly onStream = (stream: ServerHttp2Stream) => {
    const s = stream.session;
    if (s !== undefined && !this.sessions.has(s)) this.addSession(s, true);
  };
  private addSession(s: Http2Session, earlier: boolean): void {
    this.sessions.add(s);
    if (earlier) this.earlier.add(s);
    s.once("close", () => {
      this.sessions.delete(s);
      this.earlier.delete(s);
    });
    if (this.draining && !s.closed) s.close(); // the stream that showed it still finishes
  }
  private readonly onConnection = (socket: Socket) => {
    this.sockets.add(socket);
    socket.once("close", () => this.sockets.delete(socket));
  };
  private readonly onRequest = (_req: IncomingMessage, res: ServerResponse) => {
    // A call on a kept-alive connection after the drain began is answered, and sent elsewhere next.
    if (this.draining) res.setHeader("Connection", "close");
    this.responses.add(res);
    res.once("close", () => this.responses.delete(res));
  };
}

/**
 * Watches `server` (node:http, node:https or node:http2) from now on (until `unwatch()`), and
 * returns its graceful `drain`: stop accepting connections, let the calls in flight finish, and
 * resolve once every connection is closed (with undefined), or after `timeoutMs`, when the
 * connections still open are cut (with a sentence saying so).
 *
 * Node's `server.close()` alone does not do it: an HTTP/2 session stays open (its client may even
 * start new calls on it) until the client closes it, and an HTTP/1.1 keep-alive connection that
 * was busy stays open, taking new calls, until its keep-alive timeout. So each HTTP/2 session
 * gets a GOAWAY (`session.close()`: its streams finish, no new ones start); each HTTP/1.1 response
 * not yet sent says `Connection: close` (also that of a call that arrives on a kept-alive
 * connection while draining: it is answered, and the client's next call goes elsewhere), so each
 * connection closes once its response is sent, and the connections idle meanwhile are closed.
 * HTTP/2 sessions are known by the server's "session" event, and by its "stream" event for those
 * opened before this call: install it in the tick that calls `listen()`, or before, or a session
 * opened before is seen only when it starts a call (see `warning`).
 */
export function serverDrain(server: Server, timeoutMs: number): ServerDrain {
  const watch = new ServerWatch(server);
  const drain = () =>
    new Promise<string | undefined>((resolve) => {
      const { controls } = watch;
      watch.startDraining();
      const sweep =
        controls === undefined
          ? undefined
          : setInterval(() => controls.closeIdleConnections(), IDLE_SWEEP_MS);
      const deadline = setTimeout(() => {
        void watch
          .cut()
          .then((cut) => finish(`the server did not drain within ${timeoutMs} ms: ${cut}`));
      }, timeoutMs);
      function finish(problem?: string): void {
        clearInterval(sweep);
        clearTimeout(deadline);
        resolve(problem);
      }
      // Called back once every connection is gone (with an error when it was not listening).
      // For HTTP/1.1, net.Server's close(): http.Server's also closes the idle connections at
      // once (Node ≥ 19), not IDLE_SWEEP_MS later (it also stops a connection-checking timer;
      // left running, unref()ed, it checks no connection and never holds the process).
      if (controls === undefined) server.close(() => finish());
      else Server.prototype.close.call(server, () => finish());
    });
  const warning = watch.unseen
    ? "drain: the server is already listening: HTTP/2 sessions opened before closeOnSignals() was called are seen only when they start a call (until then they get no GOAWAY, and one that stays idle holds the drain until drainTimeoutMs). Pass the server in the tick that calls listen(), or before."
    : undefined;
  return { warning, drain, unwatch: () => watch.unwatch() };
}
