import { connectAsync, type MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KeyState } from "../../../gen/billing/v1/usage_pb.js";
import { BillingClient, getBillingClient } from "../../../src/index.js";
import { AedesBroker } from "../../helpers/aedes-broker.js";
import { makePki, type TestPki } from "../../helpers/certs.js";
import { decodeRecords, keyUpdate, testPublicKeys } from "../../helpers/fixtures.js";
import { Mosquitto } from "../../helpers/mosquitto.js";
import { NatsServer } from "../../helpers/nats-server.js";
import { mosquittoAvailable, natsAvailable } from "../../helpers/require-broker.js";
import { waitUntil } from "../../helpers/time.js";

// The same publish / key-sync / restart tests against every broker users run: mosquitto with
// MQTT 5 and with 3.1.1, NATS's MQTT gateway (3.1.1 only: the SDK falls back by itself) and
// Aedes. All over TLS with a CA made here.
interface Target {
  port: number;
  username?: string;
  password?: string;
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

const pki: TestPki = makePki();

async function mosquittoTarget(): Promise<Target> {
  const m = await Mosquitto.start({ pki, users: { svc: "pw" } });
  return {
    port: m.tlsPort,
    username: "svc",
    password: "pw",
    stop: () => m.stop("SIGTERM"),
    start: () => m.start(),
    close: () => m.close(),
  };
}
const matrix: Array<{
  name: string;
  available: () => boolean;
  protocolVersion: 4 | 5;
  expectVersion: 4 | 5;
  make: () => Promise<Target>;
}> = [
  {
    name: "mosquitto, MQTT 5",
    available: mosquittoAvailable,
    protocolVersion: 5,
    expectVersion: 5,
    make: mosquittoTarget,
  },
  {
    name: "mosquitto, MQTT 3.1.1",
    available: mosquittoAvailable,
    protocolVersion: 4,
    expectVersion: 4,
    make: mosquittoTarget,
  },
  {
    name: "NATS MQTT gateway",
    available: natsAvailable,
    protocolVersion: 5,
    expectVersion: 4,
    make: async () => {
      const n = await NatsServer.start(pki);
      return {
        port: n.mqttPort,
        stop: () => n.stop(),
        start: () => n.start(),
        close: () => n.close(),
      };
    },
  },
  {
    name: "Aedes",
    available: () => true,
    protocolVersion: 5,
    expectVersion: 4,
    make: async () => {
      const a = await AedesBroker.create({ pki, username: "svc", password: "pw" });
      return {
        port: a.port,
        username: "svc",
        password: "pw",
        stop: () => a.stop(),
        start: () => a.start(),
        close: () => a.close(),
      };
    },
  },
];

for (const b of matrix) {
  describe.runIf(b.available())(`broker matrix: ${b.name}`, () => {
    let target: Target;
    let backend: MqttClient;
    const reports: Buffer[] = [];
    const conn = () => ({
      host: "127.0.0.1",
      port: target.port,
      protocol: "mqtts" as const,
      ca: pki.ca,
      protocolVersion: 4 as const,
      reconnectPeriod: 100,
      ...(target.username === undefined
        ? {}
        : { username: target.username, password: target.password }),
    });

    beforeAll(async () => {
      target = await b.make();
      backend = await connectAsync({ ...conn(), clientId: `backend-${b.name.replace(/\W/g, "")}` });
      backend.on("message", (topic, payload) => {
        if (topic === "billing/report") reports.push(payload);
        if (topic === "billing/keys/request") {
          backend.publish(
            "billing/keys/update",
            Buffer.from(keyUpdate([{ key: "good", state: KeyState.ACTIVE, appId: "app-m" }], true)),
            { qos: 1 },
          );
        }
      });
      await backend.subscribeAsync(["billing/report", "billing/keys/request"], { qos: 1 });
    });
    afterAll(async () => {
      await getBillingClient()
        ?.close(1000)
        .catch(() => {});
      await backend?.endAsync(true);
      await target?.close();
    });

    it("connects with the expected MQTT version, syncs keys, and delivers every record", async () => {
      const client = new BillingClient({
        brokerHost: "127.0.0.1",
        brokerPort: target.port,
        ca: pki.ca,
        username: target.username,
        password: target.password,
        protocolVersion: b.protocolVersion,
        heartbeatIntervalMs: 0,
        reconnectBaseMs: 100,
        reconnectMaxMs: 500,
        logger: () => {},
        keyUpdatePublicKeys: testPublicKeys,
      });
      await client.connect();
      expect(client.stats().protocolVersion).toBe(b.expectVersion);
      await waitUntil(() => client.keys.loaded, 10_000, "key snapshot");
      expect(client.keys.lookup("good")?.appId).toBe("app-m");
      backend.publish(
        "billing/keys/update",
        Buffer.from(
          keyUpdate([{ key: "good", state: KeyState.BLOCKED, appId: "app-m", reason: "r" }], false),
        ),
        { qos: 1 },
      );
      await waitUntil(
        () => client.keys.lookup("good")?.state === KeyState.BLOCKED,
        10_000,
        "delta",
      );
      const ids = await Promise.all(
        Array.from({ length: 500 }, (_, i) =>
          client.reportUsage({ apiKey: "good", module: "llm", model: "m", usage: i }),
        ),
      );
      await client.flush(20_000);
      await waitUntil(
        () => decodeRecords(reports).length >= 500,
        20_000,
        "500 records at the backend",
      );
      expect(new Set(decodeRecords(reports).map((r) => r.id))).toEqual(new Set(ids));
      expect(decodeRecords(reports)[0]?.appId).toBe("app-m");
    });

    it("queues through a broker restart, reconnects and has every record acknowledged", async () => {
      const client = getBillingClient() as BillingClient;
      const before = client.stats();
      await target.stop();
      await waitUntil(() => !client.isConnected(), 10_000, "disconnect noticed");
      for (let i = 0; i < 100; i++) {
        await client.reportUsage({ apiKey: "good", module: "llm", model: "m", usage: i });
      }
      expect(client.stats().queued).toBe(100);
      await target.start();
      await client.flush(30_000);
      expect(client.stats().published).toBe(before.published + 100);
      expect(client.stats().reconnects).toBe(before.reconnects + 1);
      expect(client.keys.loaded).toBe(true); // the list is kept while disconnected
    });
  });
}
