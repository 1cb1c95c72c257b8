import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestPki } from "./certs.js";
import { sleep } from "./time.js";

const CANDIDATES = ["mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"];

/** The mosquitto binary, or undefined when it is not installed. */
export function findMosquitto(): string | undefined {
  for (const c of CANDIDATES) {
    try {
      execFileSync(c, ["-h"], { stdio: "ignore" });
      return c;
    } catch (e) {
      // `mosquitto -h` exits 3 after printing usage: it exists.
      if (
        (e as { status?: number }).status !== undefined &&
        (e as { code?: string }).code !== "ENOENT"
      ) {
        return c;
      }
    }
  }
  return undefined;
}

/** A free loopback TCP port (bound and released at once). */
export async function freePort(): Promise<number> {
  return (await freePorts(1))[0] as number;
}

/**
 * `n` distinct free loopback TCP ports: all are held until each is known, then released (ports
 * taken one after the other can be the same one twice).
 */
export async function freePorts(n: number): Promise<number[]> {
  const servers = Array.from({ length: n }, () => createServer().listen(0, "127.0.0.1"));
  await Promise.all(servers.map((s) => once(s, "listening")));
  const ports = servers.map((s) => {
    const address = s.address();
    if (address === null || typeof address !== "object") throw new Error("no port");
    return address.port;
  });
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return ports;
}

async function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** Waits until `port` accepts TCP connections; fails when `alive()` turns false or after 10 s. */
export async function waitForPort(port: number, alive: () => boolean, log: () => string) {
  const end = Date.now() + 10_000;
  while (!(await portOpen(port))) {
    if (!alive() || Date.now() > end) throw new Error(`broker did not start: ${log()}`);
    await sleep(20);
  }
}

export interface MosquittoOptions {
  /** Serve TLS on `tlsPort` with this PKI. */
  pki?: TestPki;
  /** TLS versions the TLS listener accepts (mosquitto `tls_version`). Default: `tlsv1.2`. */
  tlsVersion?: string;
  /** Users allowed to connect (the password file); anonymous access is then off. */
  users?: Record<string, string>;
  /** Also open a plain listener on `plainPort` (for the test's own backend client). */
  plain?: boolean;
  /** mosquitto ACL file content. Default: none (every user may do anything). */
  acl?: string;
  /** Keep messages across a clean stop (persistence in the temp dir). Default: off. */
  persistent?: boolean;
  /** Extra lines for mosquitto.conf (global section). */
  extra?: string[];
}

/**
 * A real mosquitto process on free loopback ports, with its own config in a temp dir. `stop()`
 * kills it (SIGKILL: a crash) or ends it; `start()` runs it again on the same ports.
 */
export class Mosquitto {
  tlsPort = 0;
  plainPort = 0;
  private proc: ChildProcess | undefined;
  private readonly dir: string;
  private readonly conf: string;
  private stderr = "";

  private constructor(
    private readonly bin: string,
    private readonly options: MosquittoOptions,
  ) {
    this.dir = mkdtempSync(join(tmpdir(), "billing-mosquitto-"));
    // mosquitto started as root drops to user "mosquitto": everything it reads must be readable.
    chmodSync(this.dir, 0o755);
    this.conf = join(this.dir, "mosquitto.conf");
  }

  static async start(options: MosquittoOptions = {}): Promise<Mosquitto> {
    const bin = findMosquitto();
    if (bin === undefined) throw new Error("mosquitto is not installed");
    const m = new Mosquitto(bin, options);
    await m.configure();
    await m.start();
    return m;
  }

  private file(name: string, content: string): string {
    const path = join(this.dir, name);
    writeFileSync(path, content);
    chmodSync(path, 0o644);
    return path;
  }

  private async configure(): Promise<void> {
    const o = this.options;
    const lines = ["log_dest stderr", "max_queued_messages 1000000"];
    if (o.persistent) {
      const data = join(this.dir, "data");
      mkdirSync(data);
      chmodSync(data, 0o777); // written by the "mosquitto" user when started as root
      lines.push("persistence true", `persistence_location ${data}/`, "autosave_interval 1");
    } else {
      lines.push("persistence false");
    }
    lines.push("per_listener_settings false");
    if (o.users) {
      const passwd = this.file("passwd", "");
      for (const [user, password] of Object.entries(o.users)) {
        execFileSync("mosquitto_passwd", ["-b", passwd, user, password]);
      }
      chmodSync(passwd, 0o644);
      lines.push("allow_anonymous false", `password_file ${passwd}`);
    } else {
      lines.push("allow_anonymous true");
    }
    if (o.acl !== undefined) lines.push(`acl_file ${this.file("acl", o.acl)}`);
    lines.push(...(o.extra ?? []));
    const [tlsPort, plainPort] = (await freePorts(2)) as [number, number];
    if (o.pki) {
      this.tlsPort = tlsPort;
      lines.push(
        `listener ${this.tlsPort} 127.0.0.1`,
        `cafile ${this.file("ca.pem", o.pki.ca)}`,
        `certfile ${this.file("server.pem", o.pki.serverCert)}`,
        `keyfile ${this.file("server.key", o.pki.serverKey)}`,
        `tls_version ${o.tlsVersion ?? "tlsv1.2"}`,
      );
    }
    if (o.plain || !o.pki) {
      this.plainPort = plainPort;
      lines.push(`listener ${this.plainPort} 127.0.0.1`);
    }
    this.file("mosquitto.conf", `${lines.join("\n")}\n`);
  }

  /** The broker's process id, while it runs. */
  get pid(): number | undefined {
    return this.proc?.pid;
  }

  get running(): boolean {
    return this.proc !== undefined;
  }

  async start(): Promise<void> {
    const proc = spawn(this.bin, ["-c", this.conf], { stdio: ["ignore", "ignore", "pipe"] });
    this.proc = proc;
    proc.stderr?.on("data", (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-8000);
    });
    proc.once("exit", () => {
      if (this.proc === proc) this.proc = undefined;
    });
    // Readiness: the ports accept connections (its log is block-buffered in a pipe).
    for (const port of [this.tlsPort, this.plainPort].filter((p) => p > 0)) {
      await waitForPort(
        port,
        () => this.proc !== undefined,
        () => this.stderr,
      );
    }
  }

  /** Stops the broker: SIGKILL by default (a crash), or SIGTERM (a clean stop). */
  async stop(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const proc = this.proc;
    if (proc === undefined) return;
    const exited = once(proc, "exit");
    proc.kill(signal);
    await exited;
    this.proc = undefined;
  }

  /**
   * Replaces the ACL file (the broker must have been started with `acl`) and makes the broker
   * read it again (SIGHUP). The reload takes a moment: wait for its effect.
   */
  setAcl(acl: string): void {
    if (this.options.acl === undefined) throw new Error("started without an ACL file");
    this.file("acl", acl);
    this.proc?.kill("SIGHUP");
  }

  /** Freezes the broker (SIGSTOP): connections stay open, nothing is answered. */
  pause(): void {
    this.proc?.kill("SIGSTOP");
  }

  /** Lets a frozen broker run again (SIGCONT). */
  resume(): void {
    this.proc?.kill("SIGCONT");
  }

  /** Stops the broker and removes its temp dir. */
  async close(): Promise<void> {
    this.resume(); // a frozen broker would not act on SIGTERM
    await this.stop("SIGTERM");
    if (existsSync(this.dir)) rmSync(this.dir, { recursive: true, force: true });
  }

  get log(): string {
    return this.stderr;
  }
}
