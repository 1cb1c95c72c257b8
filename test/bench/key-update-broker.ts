// The broker and billing backend of key-update-bench.ts, in a process of its own so that none of
// their work lands on the measured client's event loop: an embedded Aedes on a loopback port
// (plain MQTT 3.1.1) that publishes key updates on billing/keys/update when told to on stdin.
// `node --import tsx key-update-broker.ts` with BENCH_SIGNING_KEY (PKCS#8 PEM) and BENCH_AUDIENCE;
// it prints "port N", "requested" (the client's KeyListRequest); then, per line read from stdin,
// "make NAME" prepares a payload (forged-keys, forged-outer, snapshot, delta) and says "made NAME",
// "publish NAME" publishes it and says "published NAME BYTES", "dump NAME FILE" writes it to a
// file and says "dumped NAME"; "quit" ends it.

import { writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { createInterface } from "node:readline";
import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { Aedes } from "aedes";
import { KeyState, KeyStatusSchema, KeyUpdateSchema } from "../../gen/billing/v1/usage_pb.js";
import { hashApiKey } from "../../src/common/api-key-hash.js";
import { signKeyUpdate } from "../../src/keys/signed-key-update.js";
import {
  bigSnapshot,
  forgedKeyEntries,
  forgedOuterFields,
} from "../helpers/key-update-payloads.js";

const signingKey = process.env.BENCH_SIGNING_KEY ?? "";
const audience = process.env.BENCH_AUDIENCE ?? "";
const SNAPSHOT_KEYS = Number(process.env.BENCH_SNAPSHOT_KEYS ?? 1_000_000);
const FORGED_ENTRIES = Number(process.env.BENCH_FORGED_ENTRIES ?? 50_000_000);
const say = (line: string) => process.stdout.write(`${line}\n`);
let version = BigInt(Date.now()) * 1000n;

const forgedKeys = () => forgedKeyEntries(FORGED_ENTRIES, ++version, audience, "bench");
const forgedOuter = () => forgedOuterFields(FORGED_ENTRIES, ++version, "bench");
const snapshot = () =>
  bigSnapshot(SNAPSHOT_KEYS, {
    version: ++version,
    audience,
    prefix: "bench-key",
    signer: { name: "bench", privateKey: signingKey },
  });

/** A small signed delta (one key blocked), version + 1. */
function delta(): Uint8Array {
  const u = create(KeyUpdateSchema, {
    version: ++version,
    audience,
    sentAt: timestampNow(),
    keys: [
      create(KeyStatusSchema, { apiKeySha256: hashApiKey("bench-key-0"), state: KeyState.BLOCKED }),
    ],
  });
  return signKeyUpdate(u, signingKey, "bench");
}

const makers: Record<string, () => Uint8Array> = {
  "forged-keys": forgedKeys,
  "forged-outer": forgedOuter,
  snapshot,
  delta,
};

const broker = await Aedes.createBroker();
broker.on("publish", (packet, client) => {
  if (client && packet.topic === "billing/keys/request") say("requested");
});
const server = createServer((socket) => broker.handle(socket));
server.listen(0, "127.0.0.1", () => {
  const a = server.address();
  if (a !== null && typeof a === "object") say(`port ${a.port}`);
});

/** Prepared payloads (made before the measurement starts: "make NAME"). */
const prepared = new Map<string, Uint8Array>();
for await (const line of createInterface({ input: process.stdin })) {
  const [cmd, name = "", ...rest] = line.trim().split(" ");
  if (cmd === "quit") break;
  const make = makers[name];
  if (make === undefined) continue;
  if (cmd === "make") {
    prepared.set(name, make());
    say(`made ${name}`);
    continue;
  }
  const payload = prepared.get(name) ?? make();
  prepared.delete(name);
  if (cmd === "dump") {
    writeFileSync(rest[0] ?? "", payload);
    say(`dumped ${name}`);
    continue;
  }
  broker.publish(
    {
      cmd: "publish",
      topic: "billing/keys/update",
      payload: Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength),
      qos: 1,
      retain: false,
      dup: false,
    },
    () => say(`published ${name} ${payload.length}`),
  );
}
server.close();
broker.close();
