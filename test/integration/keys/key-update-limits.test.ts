import { monitorEventLoopDelay } from "node:perf_hooks";
import { connectAsync, type MqttClient } from "mqtt";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { KeyState } from "../../../gen/billing/v1/usage_pb.js";
import { BillingClient, type BillingClientOptions, getBillingClient } from "../../../src/index.js";
import { makePki, type TestPki } from "../../helpers/certs.js";
import { type KeyEntry, keyUpdate, tlsClientOptions } from "../../helpers/fixtures.js";
import { Mosquitto } from "../../helpers/mosquitto.js";
import { mosquittoAvailable } from "../../helpers/require-broker.js";
import { waitUntil } from "../../helpers/time.js";

// Floods cannot exhaust memory: maxKeys caps the list, and the MQTT 5 maximum packet size keeps
// the broker from delivering a larger key update at all. And what a 100,000-key snapshot costs.
const users = { svc: "svc-pass", backend: "backend-pass" };
const keys = (n: number, prefix = "key"): KeyEntry[] =>
  Array.from({ length: n }, (_, i) => ({
    key: `${prefix}-${i}`,
    state: KeyState.ACTIVE,
    appId: `app-${i % 100}`,
  }));

describe.runIf(mosquittoAvailable())("key-update limits on a real mosquitto", () => {
  let pki: TestPki;
  let broker: Mosquitto;
  let backend: MqttClient;
  let requests = 0; // KeyListRequests seen: a client subscribed before it sent one

  beforeAll(async () => {
    pki = makePki();
    broker = await Mosquitto.start({ pki, users });
    backend = await connectAsync({
      host: "127.0.0.1",
      port: broker.tlsPort,
      protocol: "mqtts",
      ca: pki.ca,
      username: "backend",
      password: users.backend,
    });
    backend.on("message", () => requests++);
    await backend.subscribeAsync("billing/keys/request", { qos: 1 });
  });
  afterAll(async () => {
    await backend?.endAsync(true);
    await broker?.close();
  });
  afterEach(async () => {
    await getBillingClient()
      ?.close(500)
      .catch(() => {});
  });

  async function client(extra: BillingClientOptions) {
    const before = requests;
    const c = new BillingClient(tlsClientOptions(broker.tlsPort, pki.ca, "svc", users.svc, extra));
    await c.connect();
    await waitUntil(() => requests > before, 10_000, "subscribed (its KeyListRequest arrived)");
    return c;
  }
  const send = (payload: Uint8Array) =>
    backend.publishAsync("billing/keys/update", Buffer.from(payload), { qos: 1 });
  const handled = (c: BillingClient) =>
    c.stats().keyUpdates + Object.values(c.stats().keyUpdatesRefused).reduce((a, b) => a + b, 0);

  it("maxKeys: a snapshot over it and a delta that would grow past it are refused", async () => {
    const c = await client({ maxKeys: 1000 });
    await send(keyUpdate(keys(1001), true));
    await waitUntil(() => c.stats().keyUpdatesRefused.tooLarge === 1, 10_000, "refused");
    expect(c.keys.loaded).toBe(false);
    await send(keyUpdate(keys(1000), true));
    await waitUntil(() => c.keys.loaded, 10_000, "the snapshot at the cap");
    await send(keyUpdate(keys(1, "more"), false));
    await waitUntil(() => c.stats().keyUpdatesRefused.tooLarge === 2, 10_000, "delta refused");
    expect(c.keys.size).toBe(1000);
    expect(c.keys.lookup("more-0")).toBeUndefined();
  });

  it("MQTT 5 maximum packet size: the broker never delivers a larger key update", async () => {
    const c = await client({ maxKeyUpdateBytes: 50_000 });
    expect(c.stats().protocolVersion).toBe(5);
    const big = keyUpdate(keys(1000), true); // ~90 KB
    expect(big.length).toBeGreaterThan(60_000);
    await send(big);
    await send(keyUpdate(keys(10), true));
    // QoS 1 keeps order: once the small one is applied, the big one would have come first.
    await waitUntil(() => c.keys.loaded, 10_000, "the small snapshot");
    expect(handled(c)).toBe(1);
    expect(c.keys.size).toBe(10);
  });

  it("MQTT 3.1.1 (no maximum packet size): a larger key update is refused on arrival", async () => {
    const c = await client({ maxKeyUpdateBytes: 50_000, protocolVersion: 4 });
    await send(keyUpdate(keys(1000), true));
    await waitUntil(() => c.stats().keyUpdatesRefused.tooLarge === 1, 10_000, "refused");
    expect(c.keys.loaded).toBe(false);
  });

  it("a signed 100,000-key snapshot applies; the event-loop block it costs is measured", async () => {
    const c = await client({});
    const payload = keyUpdate(keys(100_000), true);
    const delay = monitorEventLoopDelay({ resolution: 5 });
    delay.enable();
    await send(payload);
    await waitUntil(() => c.keys.loaded, 30_000, "the 100k snapshot");
    delay.disable();
    expect(c.keys.size).toBe(100_000);
    expect(c.keys.lookup("key-99999")?.appId).toBe("app-99");
    console.log(
      `100,000-key signed snapshot (${(payload.length / 1e6).toFixed(1)} MB) over mosquitto: ` +
        `longest event-loop block ${(delay.max / 1e6).toFixed(0)} ms (npm run bench measures the parts)`,
    );
  });
});
