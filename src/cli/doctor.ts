import { lookup } from "node:dns/promises";
import { connect as tcpConnect } from "node:net";
import { type PeerCertificate, connect as tlsConnect } from "node:tls";
import { fromBinary } from "@bufbuild/protobuf";
import {
  KeyUpdateSchema,
  ProducerState,
  SignedKeyUpdateSchema,
} from "../../gen/billing/v1/usage_pb.js";
import { BillingError } from "../billing-error.js";
import { atMost, withDeadline } from "../common/deadline.js";
import { type BrokerSettings, brokerName, tlsOptions } from "../mqtt/broker-settings.js";
import { type Connected, connectNegotiated, discard } from "../mqtt/connect-once.js";
import { errorHints, isUntrustedChain, toBillingError } from "../mqtt/to-billing-error.js";
import { billingTopics } from "../protocol/topics.js";
import { heartbeatPayload, keyListRequestPayload } from "../publisher/producer-messages.js";
import { cn, explainUntrustedChain } from "./broker-chain.js";
import type { CliIo } from "./cli-io.js";
import { type ConnectionValues, cliSettings } from "./connection-flags.js";

export const doctorHelp = `billing-sdk doctor [--wait-keys SECONDS] [connection flags]

Connects to a broker the way the SDK does and explains, one line each, what
works and what fails: DNS, TCP, TLS and the certificate (when it is not signed
by the --ca given: who issued it, and what --ca holds), MQTT authentication,
subscribe permission on <prefix>/keys/update, publish permission (MQTT 5 reason
codes) on <prefix>/heartbeat and <prefix>/keys/request (<prefix>/report is not
probed, so no fake usage is billed), and whether a key list arrives after that
KeyListRequest (default: wait 5 s).
Exit codes: 0 all checks passed, 1 a check failed, 2 bad usage.`;

type Settings = BrokerSettings & { topicPrefix: string };

const socketStep = (
  s: Settings,
  what: string,
  open: (done: (line: string) => void, fail: (e: Error) => void) => { destroy(): void },
) => {
  let socket: { destroy(): void } | undefined;
  return withDeadline(
    new Promise<string>((resolve, reject) => {
      socket = open((line) => {
        socket?.destroy();
        resolve(line);
      }, reject);
    }),
    s.connectTimeoutMs,
    `${what}: no answer`,
    () => socket?.destroy(),
  );
};

const dns = async (s: Settings) => {
  const { address } = await lookup(s.brokerHost);
  return `${s.brokerHost} → ${address}`;
};

const tcp = (s: Settings) =>
  socketStep(s, "TCP", (done, fail) => {
    const socket = tcpConnect(s.brokerPort, s.brokerHost);
    socket.once("connect", () => done(`port ${s.brokerPort} accepts connections`));
    socket.once("error", fail);
    return socket;
  });

const tls = (s: Settings) =>
  socketStep(s, "TLS", (done, fail) => {
    const socket = tlsConnect(tlsOptions(s));
    socket.once("secureConnect", () => {
      const cert: PeerCertificate = socket.getPeerCertificate();
      done(
        `${socket.getProtocol()}, certificate ${cn(cert.subject)} by ${cn(cert.issuer)}, valid until ${cert.valid_to}${socket.authorized ? ", verified" : ", NOT verified (--insecure)"}`,
      );
    });
    socket.once("error", fail);
    return socket;
  });

/** A publish the broker refused (MQTT 5 PUBACK reason code), said as such. */
function refusal(err: unknown): unknown {
  const code = (err as { code?: unknown }).code;
  if (typeof code !== "number") return err;
  return new BillingError(
    code === 0x87 ? "NOT_AUTHORIZED" : "PROTOCOL",
    `the broker refused the publish: ${(err as Error).message} (PUBACK reason code ${code})`,
    { cause: err },
  );
}

/** The checks of one run: each prints its line; remembers whether one failed, and why. */
class Checks {
  failed = false;
  lastError: unknown;

  constructor(
    private readonly io: CliIo,
    private readonly s: Settings,
  ) {}

  /** Runs one check and prints its line; `subject` (a topic) starts the line when it fails. */
  async run(name: string, step: () => Promise<string>, subject?: string): Promise<boolean> {
    try {
      this.io.out(`✓ ${name.padEnd(10)} ${await step()}`);
      return true;
    } catch (err) {
      this.lastError = err;
      const e = toBillingError(err, `broker ${brokerName(this.s)}`, {
        ...errorHints(this.s),
        suggestDoctor: false,
      });
      const cause = e.rawMessage;
      this.io.out(
        `✗ ${name.padEnd(10)} ${subject === undefined ? "" : `${subject}: `}${e.code}: ${cause}`,
      );
      this.failed = true;
      return false;
    }
  }
}

/** DNS, TCP and TLS, each after the one before passed: false when one failed. */
async function reachable(checks: Checks, s: Settings, ca: string | undefined, io: CliIo) {
  if (!(await checks.run("DNS", () => dns(s)))) return false;
  if (!(await checks.run("TCP", () => tcp(s)))) return false;
  if (s.tls && !(await checks.run("TLS", () => tls(s)))) {
    // Not signed by the CA given: say who did sign the broker's certificate.
    if (isUntrustedChain(checks.lastError)) {
      for (const line of await explainUntrustedChain(s, ca)) io.out(`  ${line}`);
    }
    return false;
  }
  if (!s.tls) {
    io.out(`! ${"TLS".padEnd(10)} off (mqtt://): billing traffic is readable on the network`);
  }
  return true;
}

/** What the first message on `topic` (the key-update topic) says, once one arrives. */
function keyListArrival(client: Connected["client"], topic: string): Promise<string> {
  return new Promise<string>((resolve) => {
    client.on("message", (t, payload) => {
      if (t !== topic) return;
      try {
        const signed = fromBinary(SignedKeyUpdateSchema, payload);
        const u = fromBinary(KeyUpdateSchema, signed.keyUpdate);
        const by =
          signed.signature.length > 0
            ? `carrying a signature by ${JSON.stringify(signed.signer)} (not verified here; the SDK verifies it)`
            : "UNSIGNED (refused unless insecureAcceptUnsignedKeyUpdates)";
        resolve(
          `${u.snapshot ? "snapshot" : "delta"} version ${u.version} with ${u.keys.length} keys arrived, ${by}`,
        );
      } catch {
        resolve(`a payload of ${payload.length} bytes arrived that is not a SignedKeyUpdate`);
      }
    });
  });
}

/** The publish permission on `topic`: a QoS 1 publish of `payload` and its PUBACK. */
function publishCheck(
  checks: Checks,
  { client, version }: Connected,
  topic: string,
  payload: Buffer,
) {
  return checks.run(
    "publish",
    async () => {
      await withDeadline(
        client.publishAsync(topic, payload, { qos: 1 }).catch((err: unknown) => {
          throw refusal(err);
        }),
        5000,
        `${topic}: PUBACK`,
      );
      return version === 5
        ? `${topic}: PUBACK success`
        : `${topic}: PUBACK (MQTT 3.1.1 cannot report a refusal: check the broker's ACL)`;
    },
    topic,
  );
}

/**
 * On a connected session: the subscribe permission, the publish permissions (a stopped
 * heartbeat, a KeyListRequest), then whether a key list arrives within `wait` seconds.
 */
async function sessionChecks(checks: Checks, session: Connected, s: Settings, wait: number) {
  const { client } = session;
  const topics = billingTopics(s.topicPrefix);
  const arrived = keyListArrival(client, topics.keysUpdate);
  const subscribed = await checks.run(
    "subscribe",
    async () => {
      const granted = await client.subscribeAsync(topics.keysUpdate, { qos: 1 });
      const qos = granted[0]?.qos;
      if (qos === undefined || qos >= 0x80) throw new Error(`refused (${qos})`);
      return `${topics.keysUpdate}: granted QoS ${qos}`;
    },
    topics.keysUpdate,
  );
  await publishCheck(
    checks,
    session,
    topics.heartbeat,
    heartbeatPayload(s.clientId, ProducerState.STOPPED),
  );
  const requested = await publishCheck(
    checks,
    session,
    topics.keysRequest,
    keyListRequestPayload(s.clientId),
  );
  if (subscribed && requested) {
    await checks.run("key list", () =>
      withDeadline(arrived, wait * 1000, "key list").catch(() => {
        throw new Error(
          `no KeyUpdate on ${topics.keysUpdate} within ${wait} s after a KeyListRequest: is the billing backend running?`,
        );
      }),
    );
  }
}

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
  const s = cliSettings(v, "doctor", { connectTimeoutMs: 5000 });
  const checks = new Checks(io, s);
  if (!(await reachable(checks, s, v.ca, io))) return 1;
  let session: Connected | undefined;
  await checks.run("MQTT", async () => {
    session = await connectNegotiated(s, 5);
    return `connected as "${s.username ?? "(anonymous)"}" with MQTT ${session.version === 5 ? "5" : "3.1.1"}`;
  });
  if (session === undefined) return 1;
  try {
    await sessionChecks(checks, session, s, wait);
  } finally {
    // A graceful end waits for PUBACKs a broker that stopped answering never sends: bounded.
    await atMost(session.client.endAsync(), 1000);
    discard(session.client);
  }
  return checks.failed ? 1 : 0;
}
