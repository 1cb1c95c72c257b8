import { lookup } from "node:dns/promises";
import { connect as tcpConnect } from "node:net";
import { type PeerCertificate, connect as tlsConnect } from "node:tls";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import {
  HeartbeatSchema,
  KeyListRequestSchema,
  KeyUpdateSchema,
  ProducerState,
} from "../gen/billing/v1/usage_pb.js";
import { type ResolvedOptions, resolveOptions } from "./billing-client-options.js";
import type { CliIo } from "./cli.js";
import { type ConnectionValues, connectForCli, connectionOptions } from "./cli-connection.js";
import { toBillingError } from "./to-billing-error.js";
import { billingTopics } from "./topics.js";

export const doctorHelp = `billing-sdk doctor [--wait-keys SECONDS] [connection flags]

Connects to a broker the way the SDK does and explains, one line each, what
works and what fails: DNS, TCP, TLS and the certificate, MQTT authentication,
publish permission (MQTT 5 reason codes on <prefix>/keys/request and
<prefix>/heartbeat; <prefix>/report is not probed, so no fake usage is billed),
and whether a key list arrives after a KeyListRequest (default: wait 5 s).
Exit codes: 0 all checks passed, 1 a check failed, 2 bad usage.`;

type Step = (o: ResolvedOptions) => Promise<string>;

function withTimeout<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}

const dns: Step = async (o) => {
  const { address } = await lookup(o.brokerHost);
  return `${o.brokerHost} → ${address}`;
};

const tcp: Step = (o) =>
  withTimeout(
    o.connectTimeoutMs,
    "TCP",
    new Promise<string>((resolve, reject) => {
      const s = tcpConnect(o.brokerPort, o.brokerHost);
      s.once("connect", () => {
        s.destroy();
        resolve(`port ${o.brokerPort} accepts connections`);
      });
      s.once("error", reject);
    }),
  );

const tls: Step = (o) =>
  withTimeout(
    o.connectTimeoutMs,
    "TLS",
    new Promise<string>((resolve, reject) => {
      const s = tlsConnect({
        host: o.brokerHost,
        port: o.brokerPort,
        minVersion: "TLSv1.2",
        rejectUnauthorized: !o.dangerouslyDisableTlsVerification,
        ...(o.ca === undefined ? {} : { ca: o.ca }),
        ...(o.cert === undefined ? {} : { cert: o.cert, key: o.key }),
        ...(o.servername === undefined ? {} : { servername: o.servername }),
      });
      s.once("secureConnect", () => {
        const cert: PeerCertificate = s.getPeerCertificate();
        const line = `${s.getProtocol()}, certificate "${cert.subject?.CN ?? "?"}" by "${cert.issuer?.CN ?? "?"}", valid until ${cert.valid_to}${s.authorized ? ", verified" : ", NOT verified (--insecure)"}`;
        s.destroy();
        resolve(line);
      });
      s.once("error", reject);
    }),
  );

/** `billing-sdk doctor`: one line per check; exit 1 when one fails. */
export async function doctor(
  v: ConnectionValues & { "wait-keys"?: string },
  io: CliIo,
): Promise<number> {
  const wait = Number(v["wait-keys"] ?? 5);
  if (!(wait >= 0)) {
    io.err("doctor: --wait-keys must be a number of seconds");
    return 2;
  }
  const o = resolveOptions({
    ...connectionOptions(v),
    clientId: `billing-doctor-${process.pid}`,
    connectTimeoutMs: 5000,
  });
  const where = `broker ${o.brokerHost}:${o.brokerPort}`;
  let failed = false;
  const run = async (name: string, step: () => Promise<string>): Promise<boolean> => {
    try {
      io.out(`✓ ${name.padEnd(10)} ${await step()}`);
      return true;
    } catch (err) {
      const e = toBillingError(err, where);
      io.out(
        `✗ ${name.padEnd(10)} ${e.code}: ${(e.cause as Error | undefined)?.message ?? e.message}`,
      );
      failed = true;
      return false;
    }
  };
  if (!(await run("DNS", () => dns(o)))) return 1;
  if (!(await run("TCP", () => tcp(o)))) return 1;
  if (o.tls && !(await run("TLS", () => tls(o)))) return 1;
  if (!o.tls)
    io.out(`! ${"TLS".padEnd(10)} off (mqtt://): billing traffic is readable on the network`);
  let session: Awaited<ReturnType<typeof connectForCli>> | undefined;
  await run("MQTT", async () => {
    session = await connectForCli(o);
    return `connected as "${o.username ?? "(anonymous)"}" with MQTT ${session.version === 5 ? "5" : "3.1.1"}`;
  });
  if (session === undefined) return 1;
  const { client, version } = session;
  const topics = billingTopics(o.topicPrefix);
  try {
    for (const [topic, payload] of [
      [
        topics.heartbeat,
        toBinary(
          HeartbeatSchema,
          create(HeartbeatSchema, {
            producer: o.clientId,
            sentAt: timestampNow(),
            state: ProducerState.STOPPED,
          }),
        ),
      ],
    ] as const) {
      await run("publish", async () => {
        await withTimeout(
          5000,
          "PUBACK",
          client.publishAsync(topic, Buffer.from(payload), { qos: 1 }),
        );
        return version === 5
          ? `${topic}: PUBACK success`
          : `${topic}: PUBACK (MQTT 3.1.1 cannot report a refusal: check the broker's ACL)`;
      });
    }
    await run("subscribe", async () => {
      const granted = await client.subscribeAsync(topics.keysUpdate, { qos: 1 });
      const qos = granted[0]?.qos;
      if (qos === undefined || qos >= 0x80)
        throw new Error(`${topics.keysUpdate}: refused (${qos})`);
      return `${topics.keysUpdate}: granted QoS ${qos}`;
    });
    await run("key list", async () => {
      const arrived = new Promise<string>((resolve) => {
        client.on("message", (topic, payload) => {
          if (topic !== topics.keysUpdate) return;
          try {
            const u = fromBinary(KeyUpdateSchema, payload);
            resolve(`${u.snapshot ? "snapshot" : "delta"} with ${u.keys.length} keys arrived`);
          } catch {
            resolve(`a payload of ${payload.length} bytes arrived that is not a KeyUpdate`);
          }
        });
      });
      await withTimeout(
        5000,
        "PUBACK",
        client.publishAsync(
          topics.keysRequest,
          Buffer.from(
            toBinary(
              KeyListRequestSchema,
              create(KeyListRequestSchema, { producer: o.clientId, sentAt: timestampNow() }),
            ),
          ),
          { qos: 1 },
        ),
      );
      return withTimeout(wait * 1000, "key list", arrived).catch(() => {
        throw new Error(
          `no KeyUpdate on ${topics.keysUpdate} within ${wait} s after a KeyListRequest: is the billing backend running?`,
        );
      });
    });
  } finally {
    await client.endAsync();
  }
  return failed ? 1 : 0;
}
