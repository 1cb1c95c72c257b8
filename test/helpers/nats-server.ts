import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestPki } from "./certs.js";
import { freePort, waitForPort } from "./mosquitto.js";

/** The nats-server binary, or undefined when it is not installed. */
export function findNatsServer(): string | undefined {
  for (const c of ["nats-server", "/usr/sbin/nats-server", "/usr/bin/nats-server"]) {
    try {
      execFileSync(c, ["--version"], { stdio: "ignore" });
      return c;
    } catch {}
  }
  return undefined;
}

/**
 * A real nats-server with its MQTT gateway (which needs JetStream: its store is a temp dir) on
 * free loopback ports, TLS on the MQTT listener. Stopped and its dir removed by close().
 */
export class NatsServer {
  mqttPort = 0;
  private proc: ChildProcess | undefined;
  private log = "";
  private constructor(
    private readonly bin: string,
    private readonly dir: string,
    private readonly conf: string,
  ) {}

  static async start(pki: TestPki): Promise<NatsServer> {
    const bin = findNatsServer();
    if (bin === undefined) throw new Error("nats-server is not installed");
    const dir = mkdtempSync(join(tmpdir(), "billing-nats-"));
    chmodSync(dir, 0o755);
    const file = (name: string, content: string) => {
      const p = join(dir, name);
      writeFileSync(p, content);
      return p;
    };
    const n = new NatsServer(bin, dir, join(dir, "nats.conf"));
    n.mqttPort = await freePort();
    const clientPort = await freePort();
    file(
      "nats.conf",
      `server_name: billing_test
listen: 127.0.0.1:${clientPort}
jetstream { store_dir: "${join(dir, "js")}" }
mqtt {
  listen: 127.0.0.1:${n.mqttPort}
  tls { cert_file: "${file("server.pem", pki.serverCert)}", key_file: "${file("server.key", pki.serverKey)}" }
}
`,
    );
    await n.start();
    return n;
  }

  async start(): Promise<void> {
    const proc = spawn(this.bin, ["-c", this.conf], { stdio: ["ignore", "ignore", "pipe"] });
    this.proc = proc;
    proc.stderr?.on("data", (d: Buffer) => {
      this.log = (this.log + d.toString()).slice(-4000);
    });
    proc.once("exit", () => {
      if (this.proc === proc) this.proc = undefined;
    });
    await waitForPort(
      this.mqttPort,
      () => this.proc !== undefined,
      () => this.log,
    );
  }

  async stop(): Promise<void> {
    const proc = this.proc;
    if (proc === undefined) return;
    const exited = once(proc, "exit");
    proc.kill("SIGTERM");
    await exited;
    this.proc = undefined;
  }

  async close(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
