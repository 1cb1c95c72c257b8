import { execFileSync, spawnSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import type { TestPki } from "./certs.js";
import { freePort } from "./mosquitto.js";

/** The directory of Debian's PostgreSQL binaries (initdb, pg_ctl), or undefined. */
export function findPostgresBin(): string | undefined {
  const root = "/usr/lib/postgresql";
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, "bin", "pg_ctl")))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] === undefined ? undefined : join(root, versions[0], "bin");
}

export interface PostgresOptions {
  /** Serve TLS with this PKI's server certificate (clients then verify it with `caFile`). */
  pki?: TestPki;
}

/**
 * A real PostgreSQL server in a temp dir on a free loopback port, with a password (SCRAM) for
 * user `postgres` and, with a PKI, TLS. initdb refuses to run as root: when we are root, the
 * server runs as the `postgres` user (runuser). `stop()` crashes it (`immediate`) or stops it
 * (`fast`); `start()` runs it again on the same port and data; `close()` removes everything.
 */
export class PostgresServer {
  readonly password = "pg-test-password";
  port = 0;
  /** The CA file that verifies the server certificate (with a PKI). */
  caFile: string | undefined;
  private running = false;

  private constructor(
    private readonly bin: string,
    private readonly dir: string,
    private readonly tls: boolean,
  ) {}

  static async start(options: PostgresOptions = {}): Promise<PostgresServer> {
    const bin = findPostgresBin();
    if (bin === undefined)
      throw new Error("PostgreSQL is not installed (apt-get install postgresql)");
    const dir = mkdtempSync(join(tmpdir(), "billing-pg-"));
    chmodSync(dir, 0o755);
    const pg = new PostgresServer(bin, dir, options.pki !== undefined);
    pg.port = await freePort();
    const pwfile = join(dir, "pw");
    writeFileSync(pwfile, pg.password);
    pg.own(dir, pwfile);
    pg.as("initdb", [
      "-D",
      pg.data,
      "-A",
      "scram-sha-256",
      `--pwfile=${pwfile}`,
      "-U",
      "postgres",
      "-E",
      "UTF8",
      "--no-sync",
    ]);
    rmSync(pwfile);
    if (options.pki !== undefined) {
      const cert = join(pg.data, "server.crt");
      const key = join(pg.data, "server.key");
      writeFileSync(cert, options.pki.serverCert);
      writeFileSync(key, options.pki.serverKey, { mode: 0o600 });
      pg.own(cert, key);
      pg.caFile = join(dir, "ca.pem");
      writeFileSync(pg.caFile, options.pki.ca);
      chmodSync(pg.caFile, 0o644);
    }
    await pg.start();
    return pg;
  }

  private get data(): string {
    return join(this.dir, "data");
  }

  private get asRoot(): boolean {
    return userInfo().uid === 0;
  }

  private own(...paths: string[]): void {
    if (!this.asRoot) return;
    const uid = Number(execFileSync("id", ["-u", "postgres"]).toString());
    const gid = Number(execFileSync("id", ["-g", "postgres"]).toString());
    for (const p of paths) chownSync(p, uid, gid);
  }

  /** Runs a PostgreSQL tool (as the postgres user when we are root). */
  private as(tool: string, args: string[]): void {
    const exe = join(this.bin, tool);
    const r = this.asRoot
      ? spawnSync("runuser", ["-u", "postgres", "--", exe, ...args], { encoding: "utf8" })
      : spawnSync(exe, args, { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`${tool} failed: ${r.stderr}${r.stdout}`);
  }

  /** postgres://postgres:…@127.0.0.1:port/postgres (with TLS verified against the test CA). */
  get url(): string {
    const tls = this.tls ? `?sslmode=verify-full&sslrootcert=${this.caFile}` : "";
    return `postgres://postgres:${this.password}@127.0.0.1:${this.port}/postgres${tls}`;
  }

  async start(): Promise<void> {
    const settings = [
      `-p ${this.port}`,
      `-k ${this.dir}`,
      "-c listen_addresses=127.0.0.1",
      "-c max_connections=50",
      ...(this.tls ? ["-c ssl=on"] : []),
    ].join(" ");
    this.as("pg_ctl", [
      "-D",
      this.data,
      "-o",
      settings,
      "-l",
      join(this.dir, "log"),
      "-w",
      "-t",
      "30",
      "start",
    ]);
    this.running = true;
  }

  /** The server's main process (the postmaster), while it runs: its children are the backends. */
  get pid(): number | undefined {
    if (!this.running) return undefined;
    return Number(readFileSync(join(this.data, "postmaster.pid"), "utf8").split("\n")[0]);
  }

  /** `immediate`: a crash (recovery from the WAL at the next start); `fast`: a clean stop. */
  async stop(mode: "immediate" | "fast" = "immediate"): Promise<void> {
    if (!this.running) return;
    this.as("pg_ctl", ["-D", this.data, "-m", mode, "-w", "stop"]);
    this.running = false;
  }

  async close(): Promise<void> {
    try {
      await this.stop("fast");
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}
