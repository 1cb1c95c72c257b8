import { generateKeyPairSync } from "node:crypto";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { HeartbeatSchema, KeyState, KeyUpdateSchema } from "../../../../gen/billing/v1/usage_pb.js";
import {
  BillingClient,
  type BillingClientOptions,
  BillingError,
  getBillingClient,
  requireApiKey,
  signKeyUpdate,
} from "../../../../src/index.js";
import { resolveOptions } from "../../../../src/publisher/client/options.js";
import { sameOptions } from "../../../../src/publisher/client/same-options.js";
import { EchoService } from "../../../gen/test/v1/echo_pb.js";
import { AedesBroker } from "../../../helpers/aedes-broker.js";
import { startEchoServer } from "../../../helpers/echo-server.js";
import {
  keyUpdate,
  keyUpdateMessage,
  nextVersion,
  testPublicKeys,
  unsignedKeyUpdate,
} from "../../../helpers/fixtures.js";
import { waitUntil } from "../../../helpers/time.js";

// The client side of signed key updates on an embedded broker: what is logged, counted and sent.
let broker: AedesBroker;
let server: Awaited<ReturnType<typeof startEchoServer>>;
const logs: string[] = [];
const logger = (level: string, msg: string) => logs.push(`${level}: ${msg}`);
const GOOD = { key: "good-key", state: KeyState.ACTIVE, appId: "app-good" };

beforeAll(async () => {
  broker = await AedesBroker.create();
  server = await startEchoServer([requireApiKey()]);
});
afterAll(async () => {
  await server.close();
  await broker.close();
});
afterEach(async () => {
  await getBillingClient()
    ?.close(100)
    .catch(() => {});
  logs.length = 0;
  broker.published.length = 0;
});

async function client(extra: BillingClientOptions = {}) {
  const c = new BillingClient({
    brokerHost: "127.0.0.1",
    brokerPort: broker.port,
    tls: false,
    heartbeatIntervalMs: 0,
    logger,
    ...extra,
  });
  await c.connect();
  await waitUntil(() => broker.payloads("billing/keys/request").length > 0, 5000, "subscribed");
  return c;
}
const refusedTotal = (c: BillingClient) =>
  Object.values(c.stats().keyUpdatesRefused).reduce((a, b) => a + b, 0);
async function push(c: BillingClient, payload: Uint8Array) {
  const before = c.stats().keyUpdates + refusedTotal(c);
  await broker.publish("billing/keys/update", payload);
  await waitUntil(() => c.stats().keyUpdates + refusedTotal(c) > before, 5000, "update handled");
}
async function call(key: string): Promise<Code | "ok"> {
  const echo = createClient(
    EchoService,
    createConnectTransport({ baseUrl: server.url, httpVersion: "2" }),
  );
  try {
    await echo.say({ text: "x" }, { headers: { "api-key": key } });
    return "ok";
  } catch (e) {
    return ConnectError.from(e).code;
  }
}

describe("signatures are required by default", () => {
  it("with no public key configured the list never loads, calls get Unavailable, and it says so once", async () => {
    const c = await client();
    await push(c, keyUpdate([GOOD], true));
    await push(c, unsignedKeyUpdate(keyUpdateMessage([GOOD], true)));
    await push(c, keyUpdate([GOOD], true));
    expect(c.stats()).toMatchObject({
      keysLoaded: false,
      keyUpdates: 0,
      keyUpdatesRefused: { unknownSigner: 2, missingSignature: 1 },
    });
    expect(await call("good-key")).toBe(Code.Unavailable);
    const told = logs.filter((l) => l.includes("no keyUpdatePublicKeys are configured"));
    expect(told).toHaveLength(1);
    expect(told[0]).toMatch(/^warn: .*requireApiKey\(\) answers Unavailable/);
  });

  it("insecureAcceptUnsignedKeyUpdates warns at construction and applies unsigned updates", async () => {
    const c = await client({ insecureAcceptUnsignedKeyUpdates: true });
    expect(logs.some((l) => /^warn: unsigned key updates are accepted/.test(l))).toBe(true);
    await push(c, unsignedKeyUpdate(keyUpdateMessage([GOOD], true)));
    expect(c.keys.loaded).toBe(true);
    expect(await call("good-key")).toBe("ok");
  });

  it("refusals are logged at most once per 10 s, with their reason and no key", async () => {
    const c = await client({ keyUpdatePublicKeys: testPublicKeys });
    for (let i = 0; i < 5; i++) await push(c, unsignedKeyUpdate(keyUpdateMessage([GOOD], true)));
    const warned = logs.filter((l) => l.startsWith("warn: refused"));
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatch(/missingSignature/);
    expect(c.stats().keyUpdatesRefused.missingSignature).toBe(5);
  });
});

describe("versions, gaps and staleness", () => {
  it("a delta that skips versions applies and the client asks for a snapshot", async () => {
    const c = await client({ keyUpdatePublicKeys: testPublicKeys });
    const v = nextVersion();
    await push(c, keyUpdate([GOOD], true, { version: v }));
    await push(c, keyUpdate([{ ...GOOD, appId: "app-2" }], false, { version: v + 1n }));
    const requests = broker.payloads("billing/keys/request").length;
    await push(c, keyUpdate([{ ...GOOD, appId: "app-3" }], false, { version: v + 5n }));
    expect(c.keys.lookup("good-key")?.appId).toBe("app-3");
    await waitUntil(
      () => broker.payloads("billing/keys/request").length === requests + 1,
      5000,
      "request",
    );
    expect(c.stats().keysVersion).toBe(String(v + 5n));
  });

  it("a lost revocation: incomplete after a gap, it asks again until a snapshot at its version completes it", async () => {
    const c = await client({ keyUpdatePublicKeys: testPublicKeys, maxKeyListAgeMs: 60_000 });
    const EVIL = { key: "revoked-key", state: KeyState.ACTIVE, appId: "app-evil" };
    const v = nextVersion();
    await push(c, keyUpdate([GOOD, EVIL], true, { version: v }));
    expect(await call("revoked-key")).toBe("ok");
    // Delta v+1 (revoking it) is lost; v+2 arrives: a gap. The client asks for a snapshot, and
    // when no snapshot comes, asks again (after 5 s).
    const before = broker.payloads("billing/keys/request").length;
    await push(c, keyUpdate([], false, { version: v + 2n }));
    expect(logs.some((l) => /^warn: a key-list delta skipped versions/.test(l))).toBe(true);
    await waitUntil(
      () => broker.payloads("billing/keys/request").length >= before + 2,
      8000,
      "a second request while the list is incomplete",
    );
    // Contiguous deltas do not complete it; a snapshot at its very version does.
    await push(c, keyUpdate([], false, { version: v + 3n }));
    expect(c.stats().keysVersion).toBe(String(v + 3n));
    const completing = keyUpdate([GOOD], true, { version: v + 3n });
    await push(c, completing);
    expect(c.stats().keyUpdatesRefused.duplicate).toBe(0);
    expect(await call("revoked-key")).toBe(Code.Unauthenticated);
    expect(await call("good-key")).toBe("ok");
    // Complete now: the same snapshot again is a duplicate.
    await push(c, completing);
    expect(c.stats().keyUpdatesRefused.duplicate).toBe(1);
  }, 20_000);

  it("says when the list goes stale, asks for a snapshot, and recovers on a fresh one", async () => {
    const c = await client({ keyUpdatePublicKeys: testPublicKeys, maxKeyListAgeMs: 300 });
    await push(c, keyUpdate([GOOD], true));
    expect(c.stats().keysStale).toBe(false);
    expect(await call("good-key")).toBe("ok");
    const requests = broker.payloads("billing/keys/request").length;
    await waitUntil(
      () => logs.some((l) => l.startsWith("error: the key list is stale")),
      5000,
      "stale",
    );
    expect(c.stats().keysStale).toBe(true);
    expect(await call("good-key")).toBe(Code.Unavailable);
    await waitUntil(
      () => broker.payloads("billing/keys/request").length > requests,
      5000,
      "request",
    );
    await push(c, keyUpdate([GOOD], true));
    expect(await call("good-key")).toBe("ok");
  });

  it("the heartbeat carries the applied and refused counts and the version", async () => {
    const c = await client({ keyUpdatePublicKeys: testPublicKeys, heartbeatIntervalMs: 30 });
    const v = nextVersion();
    await push(c, keyUpdate([GOOD], true, { version: v }));
    await push(c, keyUpdate([GOOD], true, { version: v - 1n }));
    await push(c, Buffer.from([0x10, 0x01]));
    const start = broker.payloads("billing/heartbeat").length;
    await waitUntil(() => broker.payloads("billing/heartbeat").length > start, 5000, "heartbeat");
    const beat = fromBinary(HeartbeatSchema, broker.payloads("billing/heartbeat").at(-1) as Buffer);
    expect(beat.keyUpdatesApplied).toBe(1n);
    expect(beat.keyListVersion).toBe(v);
    expect(beat.keyUpdatesRefused).toMatchObject({
      replayed: 1n,
      undecodable: 1n,
      badSignature: 0n,
    });
  });
});

describe("options of signed key updates", () => {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const rsa = generateKeyPairSync("rsa", { modulusLength: 1024 });
  const pub = publicKey.export({ type: "spki", format: "pem" }) as string;
  const priv = privateKey.export({ type: "pkcs8", format: "pem" }) as string;

  const field = (o: BillingClientOptions) => {
    try {
      resolveOptions(o);
    } catch (e) {
      return [(e as BillingError).code, (e as BillingError).field, (e as BillingError).message];
    }
    return undefined;
  };

  it("refuses what is not an Ed25519 public key, naming the signer", () => {
    const cases: Array<[unknown, RegExp]> = [
      ["./key-update-public.pem", /not a path/],
      [priv, /private key: give the services the public key only/],
      [privateKey, /Ed25519 public key, not a ed25519 private key/],
      [rsa.publicKey, /not a rsa public key/],
      [rsa.publicKey.export({ type: "spki", format: "pem" }), /not a rsa public key/],
      ["-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n", /not a readable PEM key/],
      [42, /PEM text or a node:crypto KeyObject/],
    ];
    for (const [key, why] of cases) {
      const [code, name, message] =
        field({ keyUpdatePublicKeys: { backend: key as string } }) ?? [];
      expect(code).toBe("INVALID_ARGUMENT");
      expect(name).toBe("keyUpdatePublicKeys.backend");
      expect(message).toMatch(why);
    }
    expect(field({ keyUpdatePublicKeys: { "bad\nname": pub } })?.[1]).toMatch(
      /^keyUpdatePublicKeys\[/,
    );
    expect(field({ keyUpdatePublicKeys: "x" as never })?.[1]).toBe("keyUpdatePublicKeys");
    for (const [name, o] of [
      ["maxKeys", { maxKeys: 0 }],
      ["maxKeyUpdateBytes", { maxKeyUpdateBytes: 300_000_000 }],
      ["maxKeyListAgeMs", { maxKeyListAgeMs: 0 }],
      ["maxKeyListAgeMs", { maxKeyListAgeMs: 2 ** 31 }],
    ] as const) {
      expect(field(o)?.[1]).toBe(name);
    }
  });

  it("fills the defaults; a PEM and its KeyObject are the same option", () => {
    const o = resolveOptions({ keyUpdatePublicKeys: { b: pub } });
    expect(o).toMatchObject({ maxKeys: 1_000_000, maxKeyUpdateBytes: 128_000_000 });
    expect(o.maxKeyListAgeMs).toBeUndefined();
    expect(o.insecureAcceptUnsignedKeyUpdates).toBe(false);
    expect(resolveOptions({ maxKeys: 1000 }).maxKeyUpdateBytes).toBe(128_000);
    expect(
      sameOptions({ keyUpdatePublicKeys: { b: pub } }, { keyUpdatePublicKeys: { b: publicKey } }),
    ).toBe(true);
    expect(
      sameOptions({ keyUpdatePublicKeys: { b: pub } }, { keyUpdatePublicKeys: { c: pub } }),
    ).toBe(false);
    expect(
      sameOptions({ keyUpdatePublicKeys: { b: pub } }, { keyUpdatePublicKeys: testPublicKeys }),
    ).toBe(false);
  });

  it("signKeyUpdate refuses what a client would refuse, and keeps the caller's message", () => {
    const u = keyUpdateMessage([GOOD], true);
    const bad: Array<[() => unknown, string]> = [
      [() => signKeyUpdate({} as never, privateKey, "b"), "update"],
      [
        () => signKeyUpdate(create(KeyUpdateSchema, { snapshot: true }), privateKey, "b"),
        "update.version",
      ],
      [() => signKeyUpdate(u, publicKey, "b"), "privateKey"],
      [() => signKeyUpdate(u, pub, "b"), "privateKey"],
      [() => signKeyUpdate(u, privateKey, ""), "signer"],
      [() => signKeyUpdate(u, privateKey, "a\u202eb"), "signer"],
    ];
    for (const [f, name] of bad) {
      expect(f).toThrow(BillingError);
      try {
        f();
      } catch (e) {
        expect((e as BillingError).field).toBe(name);
      }
    }
    const noTime = create(KeyUpdateSchema, { snapshot: true, version: 7n });
    const payload = signKeyUpdate(noTime, priv, "b");
    expect(noTime.sentAt).toBeUndefined(); // set on a copy
    expect(payload.length).toBeGreaterThan(64 + toBinary(KeyUpdateSchema, noTime).length);
  });
});
