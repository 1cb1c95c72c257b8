import { once } from "node:events";
import { connect, createServer, type Server, type Socket } from "node:net";

/**
 * A TCP proxy on a loopback port that forwards to `127.0.0.1:targetPort` and delays every chunk
 * by `delayMs` in each direction (order kept: timers of one duration fire in order), like a
 * network with a round trip of 2 × `delayMs`. `stop()` closes the listener, every connection and
 * every pending timer.
 */
export class LatencyProxy {
  port = 0;
  private readonly sockets = new Set<Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private stopped = false;

  private constructor(
    private readonly server: Server,
    private readonly targetPort: number,
    private readonly delayMs: number,
  ) {}

  static async start(targetPort: number, delayMs = 20): Promise<LatencyProxy> {
    const server = createServer();
    const proxy = new LatencyProxy(server, targetPort, delayMs);
    server.on("connection", (s) => proxy.accept(s));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const address = server.address();
    if (address === null || typeof address !== "object") throw new Error("no port");
    proxy.port = address.port;
    return proxy;
  }

  private track(s: Socket): void {
    this.sockets.add(s);
    s.on("close", () => this.sockets.delete(s));
    s.on("error", () => {});
  }

  private accept(client: Socket): void {
    if (this.stopped) {
      client.destroy();
      return;
    }
    client.setNoDelay(true);
    const upstream = connect(this.targetPort, "127.0.0.1");
    upstream.setNoDelay(true);
    this.track(client);
    this.track(upstream);
    this.pipe(client, upstream);
    this.pipe(upstream, client);
  }

  /** Forwards `from` to `to`, each chunk `delayMs` later; an end or a close follows the data. */
  private pipe(from: Socket, to: Socket): void {
    const later = (fn: () => void) => {
      const t = setTimeout(() => {
        this.timers.delete(t);
        fn();
      }, this.delayMs);
      this.timers.add(t);
    };
    from.on("data", (chunk: Buffer) =>
      later(() => {
        if (!to.destroyed) to.write(chunk);
      }),
    );
    from.on("end", () => later(() => to.end()));
    from.on("close", () => later(() => to.destroy()));
  }

  /** Closes the listener and every connection; cancels the chunks still on their way. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
