import { generateKeyPairSync } from "node:crypto";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { connectAsync, type MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KeyState } from "../../../gen/billing/v1/usage_pb.js";
import {
  BillingClient,
  type BillingClientOptions,
  getBillingClient,
  requireApiKey,
  signKeyUpdate,
} from "../../../src/index.js";
import { EchoService } from "../../gen/test/v1/echo_pb.js";
import { makePki, type TestPki } from "../../helpers/certs.js";
import { startEchoServer } from "../../helpers/echo-server.js";
import {
  type KeyEntry,
  keyUpdate,
  keyUpdateMessage,
  nextVersion,
  tlsClientOptions,
  unsignedKeyUpdate,
} from "../../helpers/fixtures.js";
import { Mosquitto } from "../../helpers/mosquitto.js";
import { mosquittoAvailable } from "../../helpers/require-broker.js";
import { waitUntil } from "../../helpers/time.js";

// The attacks of issue 11 against a real mosquitto (TLS, passwords) and a real Connect server
// guarded by requireApiKey(): every forged, altered, unsigned, replayed or stale key update is
// refused, counted, and changes no answer of the interceptor, over Connect and over gRPC.
const users = { svc: "svc-pass", backend: "backend-pass", other: "leaked-pass" };
const GOOD: KeyEntry = { key: "good-key", state: KeyState.ACTIVE, appId: "app-good" };
const BLOCKED: KeyEntry = { key: "blocked-key", state: KeyState.BLOCKED, reason: "unpaid" };
const REVOKED: KeyEntry = { key: "revoked-key", state: KeyState.ACTIVE, appId: "app-old" };
const ATTACKER: KeyEntry = { key: "attacker-chosen-key", state: KeyState.ACTIVE, appId: "evil" };

describe.runIf(mosquittoAvailable())("signed key updates on a real mosquitto", () => {
  let pki: TestPki;
  let broker: Mosquitto;
  let backend: MqttClient; // the billing backend
  let other: MqttClient; // any service whose broker password leaked
  let server: Awaited<ReturnType<typeof startEchoServer>>;

  const mqtt = (username: keyof typeof users) =>
    connectAsync({
      host: "127.0.0.1",
      port: broker.tlsPort,
      protocol: "mqtts",
      ca: pki.ca,
      username,
      password: users[username],
      reconnectPeriod: 0,
    });

  beforeAll(async () => {
    pki = makePki();
    broker = await Mosquitto.start({ pki, users });
    backend = await mqtt("backend");
    // The usage the calls report needs a subscriber: with none, mosquitto answers PUBACK 0x10
    // and the client keeps the records (close() would time out).
    await backend.subscribeAsync("billing/report", { qos: 1 });
    other = await mqtt("other");
    server = await startEchoServer([requireApiKey()]);
  });
  afterAll(async () => {
    await getBillingClient()
      ?.close(500)
      .catch(() => {});
    await server?.close();
    await backend?.endAsync(true);
    await other?.endAsync(true);
    await broker?.close();
  });

  const options = (extra: BillingClientOptions = {}) =>
    tlsClientOptions(broker.tlsPort, pki.ca, "svc", users.svc, { clientId: "svc-keys", ...extra });
  const current = () => getBillingClient() as BillingClient;
  const handled = () => {
    const s = current().stats();
    return s.keyUpdates + Object.values(s.keyUpdatesRefused).reduce((a, b) => a + b, 0);
  };
  /** Publishes on the key-update topic and waits until the client has decided on it. */
  async function send(from: MqttClient, payload: Uint8Array, retain = false) {
    const before = handled();
    await from.publishAsync("billing/keys/update", Buffer.from(payload), { qos: 1, retain });
    await waitUntil(() => handled() > before, 10_000, "the update decided on");
  }
  /** What the interceptor answers each key, over Connect, gRPC and gRPC-web (must agree). */
  async function answers(): Promise<Record<string, Code | "ok">> {
    const out: Record<string, Code | "ok"> = {};
    for (const k of [GOOD, BLOCKED, REVOKED, ATTACKER]) {
      const codes = new Set<Code | "ok">();
      for (const t of [
        createConnectTransport({ baseUrl: server.url, httpVersion: "2" }),
        createGrpcTransport({ baseUrl: server.url }),
        createGrpcWebTransport({ baseUrl: server.url, httpVersion: "2" }),
      ]) {
        codes.add(
          await createClient(EchoService, t)
            .say({ text: "x" }, { headers: { "api-key": k.key } })
            .then(
              () => "ok" as const,
              (e: unknown) => ConnectError.from(e).code,
            ),
        );
      }
      expect(codes.size, k.key).toBe(1);
      out[k.key] = [...codes][0] as Code | "ok";
    }
    return out;
  }
  const settled = {
    "good-key": "ok",
    "blocked-key": Code.PermissionDenied,
    "revoked-key": Code.Unauthenticated,
    "attacker-chosen-key": Code.Unauthenticated,
  };
  let oldSnapshot: Uint8Array; // signed, with revoked-key still active: what a replay reuses

  it("a correctly signed snapshot applies, and a signed delta revokes a key", async () => {
    const client = new BillingClient(options());
    await client.connect();
    oldSnapshot = keyUpdate([GOOD, BLOCKED, REVOKED], true);
    // Published retained, as keys push did by default: it comes back at every reconnect.
    await backend.publishAsync("billing/keys/update", Buffer.from(oldSnapshot), {
      qos: 1,
      retain: true,
    });
    await waitUntil(() => client.keys.loaded, 10_000, "the snapshot");
    expect(await answers()).toEqual({ ...settled, "revoked-key": "ok" });
    await send(backend, keyUpdate([{ ...REVOKED, state: KeyState.DELETED }], false));
    expect(await answers()).toEqual(settled);
    expect(client.stats().keyUpdates).toBe(2);
  });

  it("one flipped bit in key_update: refused (badSignature), nothing changes", async () => {
    const forged = Buffer.from(
      keyUpdate([ATTACKER, { ...BLOCKED, state: KeyState.ACTIVE }], false),
    );
    forged[20] = (forged[20] as number) ^ 0x04;
    await send(other, forged);
    expect(current().stats().keyUpdatesRefused.badSignature).toBe(1);
    expect(await answers()).toEqual(settled);
  });

  it("a signature by an unknown key: refused (badSignature / unknownSigner), nothing changes", async () => {
    const attacker = generateKeyPairSync("ed25519");
    const grant = () => keyUpdateMessage([ATTACKER, { ...BLOCKED, state: KeyState.ACTIVE }], false);
    await send(other, signKeyUpdate(grant(), attacker.privateKey, "test-backend"));
    await send(other, signKeyUpdate(grant(), attacker.privateKey, "attacker"));
    expect(current().stats().keyUpdatesRefused).toMatchObject({
      badSignature: 2,
      unknownSigner: 1,
    });
    expect(await answers()).toEqual(settled);
  });

  it("an unsigned KeyUpdate, and the old unsigned format: refused, nothing changes", async () => {
    await send(other, unsignedKeyUpdate(keyUpdateMessage([ATTACKER], true)));
    await send(other, Buffer.from([0x10, 0x01])); // the old 2-byte "empty snapshot"
    expect(current().stats().keyUpdatesRefused).toMatchObject({
      missingSignature: 1,
      undecodable: 1,
    });
    expect(await answers()).toEqual(settled);
  });

  it("a replayed older version: refused (replayed), the revoked key stays out", async () => {
    await send(other, oldSnapshot);
    expect(current().stats().keyUpdatesRefused.replayed).toBe(1);
    expect(await answers()).toEqual(settled);
  });

  it("the retained stale snapshot that comes back after a reconnect: refused, counted", async () => {
    const client = current();
    const before = client.stats();
    // Another connection with the client's id takes its session over: the broker drops ours.
    const intruder = await connectAsync({
      host: "127.0.0.1",
      port: broker.tlsPort,
      protocol: "mqtts",
      ca: pki.ca,
      username: "svc",
      password: users.svc,
      clientId: "svc-keys",
      reconnectPeriod: 0,
    });
    await waitUntil(() => client.stats().reconnects > before.reconnects, 10_000, "reconnected");
    intruder.end(true);
    await waitUntil(
      () => client.stats().keyUpdatesRefused.replayed > before.keyUpdatesRefused.replayed,
      10_000,
      "the retained snapshot refused",
    );
    expect(client.stats().keysVersion).toBe(before.keysVersion);
    expect(await answers()).toEqual(settled);
    await backend.publishAsync("billing/keys/update", Buffer.alloc(0), { qos: 1, retain: true });
  });

  it("the staleness bound: Unavailable after it, back on a fresh snapshot; a stale one never counts", async () => {
    await current().close(1000);
    const client = new BillingClient(options({ maxKeyListAgeMs: 1500 }));
    await client.connect();
    await send(backend, keyUpdate([GOOD, BLOCKED], true));
    expect(await answers()).toEqual(settled);
    await waitUntil(() => client.stats().keysStale, 10_000, "stale");
    const unavailable = {
      ...settled,
      "good-key": Code.Unavailable,
      "blocked-key": Code.Unavailable,
    };
    // Unknown keys too: no decision at all is made on an old list.
    expect(await answers()).toEqual({
      ...unavailable,
      "revoked-key": Code.Unavailable,
      "attacker-chosen-key": Code.Unavailable,
    });
    // A snapshot signed long ago (a replay to a client that lost track) changes nothing.
    await send(other, keyUpdate([GOOD, ATTACKER], true, { sentAtMs: Date.now() - 60_000 }));
    expect(client.stats().keysStale).toBe(true);
    expect((await answers())["attacker-chosen-key"]).toBe(Code.Unavailable);
    await send(backend, keyUpdate([GOOD, BLOCKED], true, { version: nextVersion() }));
    expect(await answers()).toEqual(settled);
  });
});
