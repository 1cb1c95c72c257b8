import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestPki } from "./certs.js";
import { freePorts, waitForPort } from "./mosquitto.js";
import { findNatsServer } from "./nats-server.js";

interface Node {
  name: string;
  conf: string;
  mqttPort: number;
  proc: ChildProcess | undefined;
  log: string;
}

/**
 * Three nats-server processes on loopback, routed to each other as one cluster, each with
 * JetStream (its own store dir) and the MQTT gateway (TLS, one user with a password). MQTT
 * sessions and QoS 1 messages live in JetStream streams replicated to the three nodes, so one node
 * can die without losing what it acknowledged. `kill(i)` SIGKILLs node i; `close()` stops all and
 * removes the temp dir.
 */
export class NatsCluster {
  readonly nodes: Node[] = [];
  private constructor(
    private readonly bin: string,
    private readonly dir: string,
  ) {}

  static async start(
    pki: TestPki,
    user: { username: string; password: string },
  ): Promise<NatsCluster> {
    const bin = findNatsServer();
    if (bin === undefined) throw new Error("nats-server is not installed");
    const dir = mkdtempSync(join(tmpdir(), "billing-nats-cluster-"));
    chmodSync(dir, 0o755);
    const file = (name: string, content: string) => {
      const p = join(dir, name);
      writeFileSync(p, content);
      return p;
    };
    const cert = file("server.pem", pki.serverCert);
    const key = file("server.key", pki.serverKey);
    const c = new NatsCluster(bin, dir);
    const free = await freePorts(9);
    const ports = [0, 1, 2].map((i) => ({
      client: free[3 * i] as number,
      cluster: free[3 * i + 1] as number,
      mqtt: free[3 * i + 2] as number,
    }));
    const routes = ports.map((p) => `nats-route://127.0.0.1:${p.cluster}`).join(", ");
    for (const [i, p] of ports.entries()) {
      const name = `n${i + 1}`;
      const conf = file(
        `${name}.conf`,
        `server_name: ${name}
listen: 127.0.0.1:${p.client}
jetstream { store_dir: "${join(dir, name)}" }
cluster { name: billing_test, listen: 127.0.0.1:${p.cluster}, routes: [${routes}] }
authorization { users: [ { user: "${user.username}", password: "${user.password}" } ] }
mqtt {
  listen: 127.0.0.1:${p.mqtt}
  tls { cert_file: "${cert}", key_file: "${key}" }
  ack_wait: "60s"
  max_ack_pending: 2000
}
`,
      );
      c.nodes.push({ name, conf, mqttPort: p.mqtt, proc: undefined, log: "" });
    }
    try {
      await Promise.all(c.nodes.map((_, i) => c.startNode(i)));
    } catch (err) {
      await c.close();
      throw err;
    }
    return c;
  }

  /** Starts node `i` (again). */
  async startNode(i: number): Promise<void> {
    const node = this.nodes[i] as Node;
    const proc = spawn(this.bin, ["-c", node.conf], { stdio: ["ignore", "ignore", "pipe"] });
    node.proc = proc;
    proc.stderr?.on("data", (d: Buffer) => {
      node.log = (node.log + d.toString()).slice(-8000);
    });
    proc.once("exit", () => {
      if (node.proc === proc) node.proc = undefined;
    });
    await waitForPort(
      node.mqttPort,
      () => node.proc !== undefined,
      () => node.log,
    );
  }

  /** SIGKILLs node `i` (a crash). */
  async kill(i: number): Promise<void> {
    const proc = (this.nodes[i] as Node).proc;
    if (proc === undefined) return;
    const exited = once(proc, "exit");
    proc.kill("SIGKILL");
    await exited;
  }

  async close(): Promise<void> {
    await Promise.all(
      this.nodes.map(async (n) => {
        const proc = n.proc;
        if (proc === undefined) return;
        const exited = once(proc, "exit");
        proc.kill("SIGTERM");
        await exited;
      }),
    );
    rmSync(this.dir, { recursive: true, force: true });
  }
}
