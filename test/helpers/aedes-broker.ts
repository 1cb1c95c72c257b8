import { once } from "node:events";
import { createServer as createNetServer, type Server, type Socket } from "node:net";
import { createServer as createTlsServer, type TlsOptions } from "node:tls";
import { Aedes, type AedesPublishPacket } from "aedes";
import type { TestPki } from "./certs.js";

export interface AedesOptions {
  /** Serve TLS with this PKI's server certificate. Default: plain TCP. */
  pki?: TestPki;
  /** Extra TLS server options (e.g. to offer only TLS 1.1). */
  tlsOptions?: TlsOptions;
  /** Require these credentials. Default: anyone may connect. */
  username?: string;
  password?: string;
  /** Refuse PUBLISH to topics for which this returns an error (MQTT 5 PUBACK reason code). */
  refusePublish?: (topic: string, payload: Buffer) => boolean;
  /** Never answer a PUBLISH for which this returns true: no PUBACK, ever (a broker gone deaf). */
  ignorePublish?: (topic: string) => boolean;
  /** Refuse SUBSCRIBE to topic filters for which this returns true (SUBACK 0x80). */
  refuseSubscribe?: (filter: string) => boolean;
}

/**
 * An embedded Aedes broker on a loopback port (0 = free port). `stop()` closes the listener and
 * every connection, keeping the port for `start()` again (to simulate an outage); `close()`
 * shuts everything down.
 */
export class AedesBroker {
  readonly broker: Aedes;
  port = 0;
  private server: Server | undefined;
  private sockets = new Set<Socket>();
  /** Every PUBLISH the broker accepted, in order. */
  readonly published: Array<{ topic: string; payload: Buffer; retain: boolean }> = [];

  private constructor(
    broker: Aedes,
    private readonly options: AedesOptions,
  ) {
    this.broker = broker;
  }

  static async create(options: AedesOptions = {}): Promise<AedesBroker> {
    const broker = await Aedes.createBroker({
      authenticate: (_client, username, password, done) => {
        if (options.username === undefined) return done(null, true);
        const ok = username === options.username && password?.toString() === options.password;
        if (ok) return done(null, true);
        const err = Object.assign(new Error("bad credentials"), { returnCode: 4 });
        return done(err as never, false);
      },
      authorizeSubscribe: (_client, sub, done) => {
        if (options.refuseSubscribe?.(sub.topic)) return done(null, null); // SUBACK 0x80
        done(null, sub);
      },
      authorizePublish: (_client, packet, done) => {
        if (options.ignorePublish?.(packet.topic)) return; // done is never called
        if (options.refusePublish?.(packet.topic, packet.payload as Buffer)) {
          return done(new Error("refused by test"));
        }
        done(null);
      },
    });
    const b = new AedesBroker(broker, options);
    broker.on("publish", (packet: AedesPublishPacket, client) => {
      if (client) {
        b.published.push({
          topic: packet.topic,
          payload: packet.payload as Buffer,
          retain: packet.retain,
        });
      }
    });
    await b.start();
    return b;
  }

  get running(): boolean {
    return this.server !== undefined;
  }

  async start(): Promise<void> {
    if (this.server !== undefined) return;
    const handle = (socket: Socket) => {
      this.sockets.add(socket);
      socket.on("close", () => this.sockets.delete(socket));
      socket.on("error", () => {});
      this.broker.handle(socket);
    };
    this.server = this.options.pki
      ? createTlsServer(
          {
            key: this.options.pki.serverKey,
            cert: this.options.pki.serverCert,
            ...this.options.tlsOptions,
          },
          handle,
        )
      : createNetServer(handle);
    this.server.on("tlsClientError", () => {});
    this.server.listen(this.port, "127.0.0.1");
    await once(this.server, "listening");
    const address = this.server.address();
    if (address !== null && typeof address === "object") this.port = address.port;
  }

  /** Closes the listener and drops every connection, abruptly (like a crash). */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }

  async close(): Promise<void> {
    await this.stop();
    await new Promise<void>((r) => this.broker.close(() => r()));
  }

  /** Payloads published on `topic` so far. */
  payloads(topic: string): Buffer[] {
    return this.published.filter((p) => p.topic === topic).map((p) => p.payload);
  }

  /** Publishes as the billing backend would (QoS 1, from the broker itself). */
  publish(topic: string, payload: Uint8Array, retain = false): Promise<void> {
    return new Promise((resolve, reject) =>
      this.broker.publish(
        {
          cmd: "publish",
          topic,
          payload: Buffer.from(payload),
          qos: 1,
          retain,
          dup: false,
        },
        (err) => (err ? reject(err) : resolve()),
      ),
    );
  }
}
