import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import pg from "pg";
import type { BillingClient } from "../../src/index.js";
import { sleep, waitUntil } from "./time.js";

const root = new URL("../..", import.meta.url).pathname;

/** A `billing-sdk ingest` process (the CLI from the sources), its stderr kept as lines. */
export interface IngestProcess {
  proc: ChildProcess;
  lines: string[];
  exited: Promise<number | null>;
  /** The total `stored` of its last progress line. */
  stored(): number;
}

/** Starts `billing-sdk ingest` with `args` and waits until it consumes (or fails). */
export async function startIngest(
  args: string[],
  children: ChildProcess[],
): Promise<IngestProcess> {
  const proc = spawn(
    "node",
    ["--import", "tsx", join(root, "src/cli/main.ts"), "ingest", ...args],
    {
      cwd: root,
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  children.push(proc);
  const lines: string[] = [];
  let buf = "";
  proc.stderr?.on("data", (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split("\n");
    buf = parts.pop() ?? "";
    lines.push(...parts);
  });
  const exited = once(proc, "exit").then(([code]) => code as number | null);
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  await waitUntil(
    () => gone || lines.some((l) => l.startsWith("ingest: consuming")),
    30_000,
    "ingest to start",
  );
  if (gone) throw new Error(`ingest did not start:\n${lines.join("\n")}`);
  return {
    proc,
    lines,
    exited,
    stored: () => {
      const last = lines.filter((l) => l.includes("(totals: stored ")).at(-1) ?? "";
      return Number(/stored ([\d,]+)/.exec(last)?.[1]?.replaceAll(",", "") ?? 0);
    },
  };
}

/** SIGKILLs a process and waits for it to be gone. */
export async function kill(p: IngestProcess): Promise<void> {
  p.proc.kill("SIGKILL");
  await p.exited;
}

/** The test's own view of the database: counts and sums, -1 while it cannot be reached. */
export class Tally {
  private readonly pool: pg.Pool;
  constructor(url: string) {
    this.pool = new pg.Pool({ connectionString: url, max: 2 });
    this.pool.on("error", () => {});
  }

  async rows(schema: string): Promise<number> {
    try {
      const r = await this.pool.query(`SELECT count(*)::int AS n FROM ${schema}.usage_records`);
      return r.rows[0].n as number;
    } catch {
      return -1;
    }
  }

  /** Whether `schema` exists. */
  async schemaExists(schema: string): Promise<boolean> {
    const r = await this.pool.query("SELECT 1 FROM pg_namespace WHERE nspname = $1", [schema]);
    return r.rowCount === 1;
  }

  /** Locks `table` (ACCESS EXCLUSIVE) in a transaction of its own, until `release()`. */
  async lock(table: string): Promise<{ release(): Promise<void> }> {
    const c = await this.pool.connect();
    await c.query("BEGIN");
    await c.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
    return {
      release: async () => {
        await c.query("ROLLBACK");
        c.release();
      },
    };
  }

  /** Waits until `schema` has at least `n` rows. */
  async reach(schema: string, n: number, timeoutMs = 60_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const have = await this.rows(schema);
      if (have >= n) return;
      if (Date.now() > end)
        throw new Error(`timed out waiting for ${n} rows in ${schema} (have ${have})`);
      await sleep(100);
    }
  }

  /** Everything the end-of-run checks compare. */
  async totals(schema: string) {
    const q = async (sql: string) => (await this.pool.query(sql)).rows[0];
    return {
      rows: await q(
        `SELECT count(*)::int AS n, count(DISTINCT id)::int AS ids, sum(usage)::text AS usage FROM ${schema}.usage_records`,
      ),
      rollups: await q(
        `SELECT sum(records)::int AS n, sum(usage)::text AS usage FROM ${schema}.usage_minutely`,
      ),
      rejected: await q(`SELECT count(*)::int AS n FROM ${schema}.rejected_records`),
      ids: new Set(
        (await this.pool.query(`SELECT id::text FROM ${schema}.usage_records`)).rows.map(
          (r: { id: string }) => r.id,
        ),
      ),
    };
  }

  end(): Promise<void> {
    return this.pool.end();
  }
}

/** What a producer run sent: every id `reportUsage` resolved with, and the usage summed. */
export interface Produced {
  ids: string[];
  total: bigint;
  done: Promise<void>;
}

/**
 * Reports `n` records through `client` in the background, `perTurn` at a time with a pause
 * between turns (a steady stream rather than one burst), usage 1..997 cycling; `done` resolves
 * once every one was acknowledged by the broker (flush).
 */
export function produce(
  client: BillingClient,
  n: number,
  perTurn = 250,
  pauseMs = 25,
  flushMs = 120_000,
): Produced {
  const out: Produced = { ids: [], total: 0n, done: Promise.resolve() };
  out.done = (async () => {
    for (let i = 0; i < n; i += perTurn) {
      const turn: Array<Promise<string>> = [];
      for (let j = i; j < Math.min(n, i + perTurn); j++) {
        const usage = (j % 997) + 1;
        out.total += BigInt(usage);
        turn.push(client.reportUsage({ apiKey: "fault-key", module: "llm", model: "m", usage }));
      }
      out.ids.push(...(await Promise.all(turn)));
      await sleep(pauseMs);
    }
    await client.flush(flushMs);
  })();
  return out;
}
