import { hostname } from "node:os";
import { BillingError } from "../billing-error.js";
import type { BillingLogger } from "../common/logger.js";
import { createUsageConsumer } from "../consumer/usage-consumer.js";
import type { UsageConsumer } from "../consumer/usage-consumer-api.js";
import type { UsageStore } from "../consumer/usage-store.js";
import { createPostgresUsageStore } from "../postgres/postgres-usage-store.js";
import { billingTopics } from "../protocol/topics.js";
import type { CliIo } from "./cli-io.js";
import { brokerUrl, type ConnectionValues, connectionOptions } from "./connection-flags.js";
import { type StoreValues, storeFlagsHelp, storeLocation } from "./store-flags.js";

export const ingestHelp = `billing-sdk ingest (--postgres URL | --pglite DIR) [--group NAME] [--client-id ID] [--schema NAME]
                   [--fallback-broker URL]... [--progress SECONDS] [--write-timeout SECONDS]
                   [connection flags]

The ingest service: consumes the usage records on <prefix>/report into
PostgreSQL, each record once in <schema>.usage_records, summed per minute in
<schema>.usage_minutely; records that cannot be billed go to
<schema>.rejected_records. A message is acknowledged only after the transaction
that stored it committed. A persistent session named by --client-id keeps what
arrives while the process is away. With --group (MQTT 5), a shared subscription
($share/<group>/...): the processes of a group split the records. A progress line
(records/s, lag, rejected, id conflicts, and the totals) goes to stderr every
--progress seconds; records that came under an id already stored with other
content (id conflicts: never billed) are also said in a warning, at most once
per 10 s. SIGTERM or SIGINT stops cleanly: open transactions finish, their
messages are acknowledged, then it disconnects.
${storeFlagsHelp}
  --schema NAME           schema of the tables (default billing)
  --group NAME            shared-subscription group (default none: every record)
  --client-id ID          MQTT client id: the same at every start, one per process
                          (default billing-ingest[-<group>]-<hostname>)
  --fallback-broker URL   another node of the broker cluster (repeatable)
  --progress SECONDS      progress line interval (default 10, 0 = none)
  --write-timeout SECONDS the longest one transaction may take (PostgreSQL's
                          statement_timeout too): past it, it is made again later,
                          and a stop waits no longer for it (default 30)
Exit codes: 0 stopped by a signal, 1 could not start, 2 bad usage.`;

export interface IngestValues extends ConnectionValues, StoreValues {
  schema?: string | undefined;
  group?: string | undefined;
  "client-id"?: string | undefined;
  "fallback-broker"?: string[] | undefined;
  progress?: string | undefined;
  "write-timeout"?: string | undefined;
}

const f = (n: number) => Math.round(n).toLocaleString("en-US");

/** The flags of `ingest`, checked, with their defaults. */
function ingestSettings(v: IngestValues) {
  const location = storeLocation(v);
  const progressSeconds = Number(v.progress ?? "10");
  if (!Number.isFinite(progressSeconds) || progressSeconds < 0) {
    throw BillingError.invalid("--progress", "must be a number of seconds ≥ 0");
  }
  const writeTimeoutMs = Number(v["write-timeout"] ?? "30") * 1000;
  if (!Number.isSafeInteger(writeTimeoutMs) || writeTimeoutMs < 1000) {
    throw BillingError.invalid("--write-timeout", "must be a whole number of seconds ≥ 1");
  }
  const base = connectionOptions(v);
  const fallbackBrokers = (v["fallback-broker"] ?? []).map((u) => {
    const b = brokerUrl("--fallback-broker", u);
    if (b.tls !== base.tls) {
      throw BillingError.invalid("--fallback-broker", "must use the same scheme as --broker");
    }
    return { host: b.host, port: b.port };
  });
  const group = v.group;
  const clientId =
    v["client-id"] ??
    `billing-ingest-${group === undefined ? "" : `${group}-`}${hostname().slice(0, 40)}`;
  return { location, progressSeconds, writeTimeoutMs, base, fallbackBrokers, group, clientId };
}

/**
 * `store`, watched for the lag: how old the newest record of the last committed batch was when
 * it committed. `takeLag()` says it (undefined: no batch since the last call) and forgets it.
 */
function lagWatched(store: UsageStore): { store: UsageStore; takeLag(): number | undefined } {
  let lagMs: number | undefined;
  return {
    store: {
      async write(batch) {
        const result = await store.write(batch);
        let newest = 0;
        for (const r of batch.records) {
          const t = r.occurredAt;
          const ms = t === undefined ? 0 : Number(t.seconds) * 1000 + t.nanos / 1e6;
          if (ms > newest) newest = ms;
        }
        if (newest > 0) lagMs = Math.max(0, Date.now() - newest);
        return result;
      },
    },
    takeLag() {
      const lag = lagMs;
      lagMs = undefined;
      return lag;
    },
  };
}

/**
 * A function that prints one progress line: the rates since its last call, and the totals
 * (rejected: rejections as they arrived; rejected rows stored: what `rejected_records` gained).
 */
export function progressLine(
  consumer: UsageConsumer,
  takeLag: () => number | undefined,
  io: CliIo,
) {
  let last = { at: Date.now(), handled: 0, rejected: 0, conflicts: 0 };
  return () => {
    const s = consumer.stats();
    const now = Date.now();
    const seconds = (now - last.at) / 1000;
    const rate = seconds > 0 ? (s.handled - last.handled) / seconds : 0;
    const lagMs = takeLag();
    const lag = lagMs === undefined ? "-" : `${(lagMs / 1000).toFixed(1)} s`;
    io.err(
      `ingest: ${f(rate)} records/s, lag ${lag}, rejected ${f(s.rejectedDeliveries - last.rejected)}, id conflicts ${f(
        s.idConflicts - last.conflicts,
      )} (totals: stored ${f(s.handled)}, duplicates ${f(s.duplicates)}, id conflicts ${f(
        s.idConflicts,
      )}, rejected ${f(s.rejectedDeliveries)}, rejected rows stored ${f(s.rejectedStored)}, pending ${f(
        s.pending,
      )}, failed writes ${f(s.failed)}${s.connected ? "" : ", disconnected"})`,
    );
    last = {
      at: now,
      handled: s.handled,
      rejected: s.rejectedDeliveries,
      conflicts: s.idConflicts,
    };
  };
}

/** `billing-sdk ingest`: the consumer into PostgreSQL until SIGTERM/SIGINT. */
export async function ingest(v: IngestValues, io: CliIo): Promise<number> {
  const { location, progressSeconds, writeTimeoutMs, base, fallbackBrokers, group, clientId } =
    ingestSettings(v);
  const store = await createPostgresUsageStore({
    ...location,
    schema: v.schema,
    statementTimeoutMs: writeTimeoutMs,
  });
  const watched = lagWatched(store);
  const logger: BillingLogger = (level, message) => {
    if (level !== "debug") io.err(`ingest: ${level}: ${message}`);
  };
  const consumer = createUsageConsumer({
    ...base,
    fallbackBrokers,
    clientId,
    group,
    store: watched.store,
    handlerTimeoutMs: writeTimeoutMs,
    logger,
  });
  try {
    await consumer.ready;
  } catch (err) {
    await store.close().catch(() => {});
    throw err;
  }
  const version = consumer.stats().protocolVersion;
  io.err(
    `ingest: consuming ${billingTopics(base.topicPrefix).report} as ${clientId} (MQTT ${
      version === 4
        ? "3.1.1, no shared subscription"
        : `5, ${group === undefined ? "no group" : `group ${group}`}`
    }) into ${store.where}, schema ${store.schema}`,
  );

  const progress = progressLine(consumer, watched.takeLag, io);
  const timer = progressSeconds > 0 ? setInterval(progress, progressSeconds * 1000) : undefined;
  await new Promise<void>((resolve) => io.onInterrupt(resolve));
  clearInterval(timer);
  io.err("ingest: stopping: finishing open transactions, then acknowledging");
  await consumer.close();
  await store.close();
  progress();
  io.err("ingest: stopped");
  return 0;
}
