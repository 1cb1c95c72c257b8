import { createHash, generateKeyPairSync, type KeyObject } from "node:crypto";
import { connectAsync, type MqttClient } from "mqtt";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { KeyState } from "../../../../gen/billing/v1/usage_pb.js";
import { BillingClient, signKeyUpdate } from "../../../../src/index.js";
import { billingTopics } from "../../../../src/protocol/topics.js";
import { resolveOptions } from "../../../../src/publisher/client/options.js";
import { KeySync, type KeySyncTiming } from "../../../../src/publisher/key-sync/key-sync.js";
import { AedesBroker } from "../../../helpers/aedes-broker.js";
import {
  keyUpdate,
  keyUpdateMessage,
  nextVersion,
  plainClientOptions,
  testPublicKeys,
  testSigner,
  unsignedKeyUpdate,
} from "../../../helpers/fixtures.js";
import { waitUntil } from "../../../helpers/time.js";

// What a service says about its key list, so that "every call answers Unavailable" never comes
// without a word: the keys it pins (by fingerprint) at start, the pinned key a bad signature
// failed, and, once per episode, why the list cannot be used and what to check.
let broker: AedesBroker;
beforeAll(async () => {
  broker = await AedesBroker.create();
});
afterAll(async () => broker.close());
const logs: Array<{ level: string; msg: string }> = [];
const log = (level: string, msg: string) => logs.push({ level, msg });
const said = (pattern: RegExp) => logs.filter((l) => pattern.test(l.msg));
const cleanup: Array<() => Promise<unknown> | undefined> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
  logs.length = 0;
});
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The fingerprint computed here, from the key's JWK (not by the SDK's helper). */
const fingerprintOf = (key: KeyObject) =>
  `sha256:${createHash("sha256")
    .update(Buffer.from(key.export({ format: "jwk" }).x as string, "base64url"))
    .digest("hex")}`;

/** A KeySync on its own MQTT connection to the test broker, with short timings. */
async function keySync(timing: KeySyncTiming, extra: Record<string, unknown> = {}) {
  const o = resolveOptions(
    plainClientOptions(broker.port, { keyUpdatePublicKeys: testPublicKeys, ...extra }),
  );
  const sync = new KeySync(billingTopics(), o, log, timing);
  const mqtt: MqttClient = await connectAsync({
    host: "127.0.0.1",
    port: broker.port,
    protocolVersion: 4,
  });
  mqtt.on("message", (topic, payload) => sync.onMessage(topic, payload));
  cleanup.push(() => {
    sync.stop();
    return mqtt.endAsync(true);
  });
  const requests = broker.payloads("billing/keys/request").length;
  sync.start(mqtt);
  await waitUntil(
    () => broker.payloads("billing/keys/request").length > requests,
    5000,
    "subscribed and asked",
  );
  return { sync, mqtt };
}
async function push(sync: KeySync, payload: Uint8Array) {
  const handled = () =>
    sync.gate.applied + Object.values(sync.gate.refused).reduce((a, b) => a + b, 0);
  const before = handled();
  await broker.publish("billing/keys/update", payload);
  await waitUntil(() => handled() > before, 5000, "update handled");
}
const GOOD = { key: "good-key", state: KeyState.ACTIVE, appId: "app" };

describe("the pinned keys", () => {
  it("are logged at start with their fingerprints, by signer name", async () => {
    const old = generateKeyPairSync("ed25519");
    const c = new BillingClient(
      plainClientOptions(broker.port, {
        logger: log,
        keyUpdateAudience: "billing",
        keyUpdatePublicKeys: { ...testPublicKeys, "backend-2024": old.publicKey },
      }),
    );
    cleanup.push(() => c.close(100));
    const pinned = said(/^key updates signed by/);
    expect(pinned.map((l) => [l.level, l.msg])).toEqual([
      [
        "info",
        `key updates signed by "test-backend" are verified with the pinned key ${fingerprintOf(testSigner.publicKey)}`,
      ],
      [
        "info",
        `key updates signed by "backend-2024" are verified with the pinned key ${fingerprintOf(old.publicKey)}`,
      ],
    ]);
  });

  it("a refused signature names the pinned key it did not verify with", async () => {
    const { sync } = await keySync({});
    const attacker = generateKeyPairSync("ed25519");
    await push(
      sync,
      signKeyUpdate(keyUpdateMessage([GOOD], true), attacker.privateKey, testSigner.name),
    );
    const refused = said(/^refused 1 key update/);
    expect(refused).toHaveLength(1);
    expect(refused[0]?.msg).toContain(
      `badSignature: the signature by "test-backend" does not verify with the pinned key ${fingerprintOf(testSigner.publicKey)}`,
    );
  });
});

describe("why the list cannot be used, said once per episode", () => {
  it("no snapshot some time after connecting: what to check, and the last refusal", async () => {
    const { sync, mqtt } = await keySync({ noSnapshotMs: 150 });
    await push(sync, keyUpdate([GOOD], true, { audience: "staging" })); // refused
    await waitUntil(() => said(/^no key-list snapshot/).length > 0, 5000, "said");
    const [first] = said(/^no key-list snapshot/);
    expect(first?.level).toBe("error");
    expect(first?.msg).toContain("requireApiKey() answers Unavailable until one is applied");
    expect(first?.msg).toContain("publishing signed snapshots on billing/keys/update");
    expect(first?.msg).toContain("key-list requests on billing/keys/request");
    expect(first?.msg).toContain(`"test-backend" ${fingerprintOf(testSigner.publicKey)}`);
    expect(first?.msg).toContain('keyUpdateAudience ("billing")');
    expect(first?.msg).toContain("The last refused key update: wrongAudience");
    expect(first?.msg).toContain("billing-sdk doctor");
    sync.start(mqtt); // a reconnect: the same episode
    await pause(400);
    expect(said(/^no key-list snapshot/)).toHaveLength(1);
  });

  it("names the topics and the audience without characters a terminal acts on", async () => {
    // A valid topic, but no valid audience: the audience is set apart (a process that checks keys;
    // one that only reports usage says nothing of its key list).
    const prefix = "bill\u202eing";
    const o = resolveOptions(
      plainClientOptions(broker.port, {
        topicPrefix: prefix,
        keyUpdatePublicKeys: testPublicKeys,
        keyUpdateAudience: "billing",
      }),
    );
    const sync = new KeySync(billingTopics(prefix), o, log, { noSnapshotMs: 100 });
    const mqtt = await connectAsync({ host: "127.0.0.1", port: broker.port, protocolVersion: 4 });
    cleanup.push(() => {
      sync.stop();
      return mqtt.endAsync(true);
    });
    sync.start(mqtt);
    await waitUntil(() => said(/^no key-list snapshot/).length > 0, 5000, "said");
    const [message] = said(/^no key-list snapshot/);
    expect(message?.msg).toContain("key-list requests on billing/keys/request and");
    expect(message?.msg).toContain('keyUpdateAudience ("billing")');
    expect(message?.msg.includes("\u202e")).toBe(false);
  });

  it("not once the snapshot came in time", async () => {
    const { sync } = await keySync({ noSnapshotMs: 300 });
    await push(sync, keyUpdate([GOOD], true));
    await pause(500);
    expect(said(/^no key-list snapshot/)).toHaveLength(0);
  });

  it("stale: once per stale spell, naming what to check", async () => {
    const { sync } = await keySync({}, { maxKeyListAgeMs: 150 });
    await push(sync, keyUpdate([GOOD], true));
    await waitUntil(() => said(/^the key list is stale/).length > 0, 5000, "stale");
    await pause(400);
    const stale = said(/^the key list is stale/);
    expect(stale).toHaveLength(1);
    expect(stale[0]?.level).toBe("error");
    expect(stale[0]?.msg).toContain("re-sending a snapshot on billing/keys/update");
    expect(stale[0]?.msg).toContain("billing-sdk doctor");
    await push(sync, keyUpdate([GOOD], true)); // fresh again, then stale again: a new spell
    await waitUntil(() => said(/^the key list is stale/).length === 2, 5000, "stale again");
  });

  it("stale: deltas applied while stale (after a gap) neither say it again nor ask again", async () => {
    const { sync } = await keySync({}, { maxKeyListAgeMs: 150 });
    const v = nextVersion();
    await push(sync, keyUpdate([GOOD], true, { version: v }));
    await waitUntil(() => said(/^the key list is stale/).length > 0, 5000, "stale");
    await pause(1100); // past the 1 s between snapshot requests
    const requests = broker.payloads("billing/keys/request").length;
    // The first skips a version: none of them refreshes the list, which stays stale.
    for (let i = 0; i < 8; i++) {
      await push(sync, keyUpdate([], false, { version: v + 2n + BigInt(i) }));
      await pause(200);
    }
    expect(said(/^the key list is stale/)).toHaveLength(1);
    // One request for the gap (the list is incomplete), none per delta for the stale list.
    expect(broker.payloads("billing/keys/request").length - requests).toBe(1);
  });

  it("incomplete: once while no snapshot answers after a gap, again after the next gap", async () => {
    const { sync } = await keySync({ incompleteFirstMs: 100 });
    const v = nextVersion();
    await push(sync, keyUpdate([GOOD], true, { version: v }));
    await push(sync, keyUpdate([], false, { version: v + 2n })); // v + 1 lost
    await waitUntil(() => said(/^the key list is still incomplete/).length > 0, 5000, "said");
    await pause(800); // asked again after 200 and 400 ms more
    const incomplete = said(/^the key list is still incomplete/);
    expect(incomplete).toHaveLength(1);
    expect(incomplete[0]?.level).toBe("warn");
    expect(incomplete[0]?.msg).toContain(`(the list is at version ${v + 2n})`);
    expect(incomplete[0]?.msg).toContain("requests on billing/keys/request");
    expect(incomplete[0]?.msg).toContain("billing-sdk doctor");
    await push(sync, keyUpdate([GOOD], true, { version: v + 2n })); // completes it
    expect(sync.gate.complete).toBe(true);
    await push(sync, keyUpdate([], false, { version: v + 5n })); // another gap
    await waitUntil(() => said(/^the key list is still incomplete/).length === 2, 5000, "again");
  });
});

describe("a process that only reports usage (no keyUpdatePublicKeys, unsigned updates refused)", () => {
  const loud = () => logs.filter((l) => l.level === "warn" || l.level === "error");

  it("says nothing at warn or above while the backend pushes signed snapshots; they are counted", async () => {
    const { sync } = await keySync({ noSnapshotMs: 150 }, { keyUpdatePublicKeys: undefined });
    for (let i = 0; i < 4; i++) {
      await push(sync, keyUpdate([GOOD], true)); // signed by a signer it has no key for
      await pause(100);
    }
    await push(sync, unsignedKeyUpdate(keyUpdateMessage([GOOD], true)));
    await pause(300); // past noSnapshotMs
    expect(loud()).toEqual([]);
    expect(sync.gate.refused).toMatchObject({ unknownSigner: 4, missingSignature: 1 });
    expect(sync.keys.loaded).toBe(false);
    // Still there for whoever reads debug logs.
    const refused = said(/^refused 1 key update\(s\)/);
    expect(refused.map((l) => l.level)).toEqual(["debug"]);
    expect(refused[0]?.msg).toContain("unknownSigner");
  });

  it("other refusals still warn: they are not what a process without keys expects", async () => {
    const { sync } = await keySync({}, { keyUpdatePublicKeys: undefined });
    await push(sync, Buffer.from("not a key update"));
    expect(loud().map((l) => [l.level, l.msg.replace(/, e\.g\. one (\w+):.*/, " $1")])).toEqual([
      ["warn", "refused 1 key update(s) since the last report undecodable"],
    ]);
  });
});
