import { fromBinary, toJson } from "@bufbuild/protobuf";
import {
  HeartbeatSchema,
  KeyListRequestSchema,
  KeyUpdateSchema,
  SignedKeyUpdateSchema,
  UsageBatchSchema,
  UsageRecordSchema,
} from "../../gen/billing/v1/usage_pb.js";
import { connectNegotiated } from "../mqtt/connect-once.js";
import { billingTopics } from "../protocol/topics.js";
import { decodeUsageBatch } from "../protocol/usage-batch.js";
import type { CliIo } from "./cli-io.js";
import { type ConnectionValues, cliSettings } from "./connection-flags.js";

export const tailHelp = `billing-sdk tail [--heartbeats] [--keys] [--count N] [connection flags]

Prints every usage record published on <prefix>/report as one JSON line
({"topic", "message"}), decoded from protobuf. --heartbeats and --keys add
<prefix>/heartbeat and the key-list topics (fingerprints only: raw keys never
travel; a key update is shown with its signer, its signature is not checked
here). --count N exits after N messages. A progress line goes to stderr every
10 s. Exit codes: 0 done, 1 connection failed or lost, 2 bad usage.

While tail runs, the broker counts it as a subscriber of <prefix>/report, so it
no longer answers "no subscriber" (MQTT 5 PUBACK 0x10) to producers: records
reported while no ingest session exists go to tail only and are not stored.
Run the ingest first (its persistent session keeps records while it is away).`;

/** What tail says on stderr once subscribed: it takes the place of a missing ingest. */
function tailSubscriberWarning(report: string): string {
  return `tail: warning: while tail runs, the broker counts it as a subscriber of ${report}: records reported while no ingest session exists go to tail only and are not stored; run the ingest first (persistent session)`;
}

/** `billing-sdk tail`: subscribe and print decoded messages as JSON lines. */
export async function tail(
  v: ConnectionValues & { heartbeats?: boolean; keys?: boolean; count?: string },
  io: CliIo,
): Promise<number> {
  const s = cliSettings(v, "tail");
  const topics = billingTopics(s.topicPrefix);
  const schemas = new Map<string, Parameters<typeof fromBinary>[0]>([
    [topics.report, UsageBatchSchema],
  ]);
  if (v.heartbeats) schemas.set(topics.heartbeat, HeartbeatSchema);
  if (v.keys) {
    schemas.set(topics.keysUpdate, SignedKeyUpdateSchema);
    schemas.set(topics.keysRequest, KeyListRequestSchema);
  }
  const limit = v.count === undefined ? Number.POSITIVE_INFINITY : Number(v.count);
  if (!(limit > 0)) {
    io.err("tail: --count must be a positive number");
    return 2;
  }
  const { client } = await connectNegotiated(s, 5);
  let seen = 0;
  return new Promise<number>((resolve) => {
    const progress = setInterval(() => io.err(`tail: ${seen} messages so far`), 10_000);
    progress.unref();
    let done = false;
    // Ending by choice (Ctrl-C, --count reached) closes the connection too: only a close
    // before that is a lost connection.
    const finish = (code: number) => {
      if (done) return;
      done = true;
      clearInterval(progress);
      client.on("error", () => {});
      client.end(true, {}, () => resolve(code));
    };
    io.onInterrupt(() => finish(0));
    client.on("close", () => {
      if (done) return;
      io.err("tail: connection lost");
      finish(1);
    });
    const print = (topic: string, message: unknown) => {
      if (done) return;
      io.out(JSON.stringify({ topic, message }));
      if (++seen >= limit) finish(0);
    };
    client.on("message", (topic, payload) => {
      const schema = schemas.get(topic);
      if (schema === undefined) return;
      try {
        if (topic === topics.report) {
          // A UsageBatch: one line per record.
          for (const r of decodeUsageBatch(payload)) print(topic, toJson(UsageRecordSchema, r));
        } else if (topic === topics.keysUpdate) {
          const signed = fromBinary(SignedKeyUpdateSchema, payload);
          print(topic, {
            signer: signed.signer,
            // Not verified here (tail has no public keys): a forgery carries a signature too.
            signature: signed.signature.length > 0 ? "present, not verified" : "none",
            keyUpdate: toJson(KeyUpdateSchema, fromBinary(KeyUpdateSchema, signed.keyUpdate)),
          });
        } else {
          print(topic, toJson(schema, fromBinary(schema, payload)));
        }
      } catch {
        print(topic, { undecodable: payload.length });
      }
    });
    client.subscribe([...schemas.keys()], { qos: 1 }, (err) => {
      if (err) {
        io.err(`tail: subscribe failed: ${err.message}`);
        finish(1);
      } else {
        io.err(tailSubscriberWarning(topics.report));
        io.err(`tail: listening on ${[...schemas.keys()].join(", ")}`);
      }
    });
  });
}
