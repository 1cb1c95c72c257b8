import { once } from "node:events";
import { createServer, type Socket } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { BillingClient, type BillingClientOptions, getBillingClient } from "../../../src/index.js";
import { AedesBroker } from "../../helpers/aedes-broker.js";
import { makePki, type TestPki } from "../../helpers/certs.js";
import { freePort } from "../../helpers/mosquitto.js";

// TLS and connection failures against an embedded broker with real certificates: each must be
// refused with the BillingError code that names its cause.
let pki: TestPki;
let otherPki: TestPki;
let broker: AedesBroker;

beforeAll(async () => {
  pki = makePki();
  otherPki = makePki();
  broker = await AedesBroker.create({ pki, username: "svc", password: "s3cret" });
});
afterAll(async () => broker.close());
afterEach(async () => {
  await getBillingClient()
    ?.close(0)
    .catch(() => {});
});

function options(extra: BillingClientOptions = {}): BillingClientOptions {
  return {
    brokerHost: "127.0.0.1",
    brokerPort: broker.port,
    ca: pki.ca,
    username: "svc",
    password: "s3cret",
    heartbeatIntervalMs: 0,
    reconnectBaseMs: 10_000,
    logger: () => {},
    ...extra,
  };
}

describe("connecting over verified TLS", () => {
  it("connects with the right CA, host name and credentials", async () => {
    const client = new BillingClient(options());
    await client.connect();
    expect(client.isConnected()).toBe(true);
    await client.reportUsage({ apiKey: "k", module: "asr", model: "whisper", usage: 30 });
    await client.flush(5000);
    expect(broker.payloads("billing/report")).toHaveLength(1);
  });

  it("checks the host name through servername", async () => {
    const client = new BillingClient(options({ brokerHost: "localhost", servername: "localhost" }));
    await client.connect();
  });

  for (const [name, extra, code] of [
    ["an unknown CA", (): BillingClientOptions => ({ ca: otherPki.ca }), "TLS"],
    ["no CA (system CAs only)", (): BillingClientOptions => ({ ca: undefined }), "TLS"],
    ["a wrong host name", (): BillingClientOptions => ({ servername: "billing.invalid" }), "TLS"],
    ["a wrong password", (): BillingClientOptions => ({ password: "nope" }), "NOT_AUTHORIZED"],
    ["plain MQTT to a TLS port", (): BillingClientOptions => ({ tls: false }), "UNREACHABLE"],
  ] as const) {
    it(`refuses ${name} with ${code}`, async () => {
      const client = new BillingClient(options(extra()));
      const err = await client.connect().catch((e: unknown) => e);
      expect(err).toMatchObject({ name: "BillingError", code });
      expect(String((err as Error).message)).not.toContain("s3cret");
      expect(client.isConnected()).toBe(false);
    });
  }

  it("refuses a broker that offers only TLS 1.1 (TLS 1.2 is the minimum)", async () => {
    const old = await AedesBroker.create({
      pki,
      tlsOptions: { maxVersion: "TLSv1.1", minVersion: "TLSv1", ciphers: "DEFAULT@SECLEVEL=0" },
    });
    try {
      const client = new BillingClient(options({ brokerPort: old.port }));
      await expect(client.connect()).rejects.toMatchObject({ code: "TLS" });
    } finally {
      await old.close();
    }
  });

  it("accepts any certificate only with dangerouslyDisableTlsVerification", async () => {
    const client = new BillingClient(
      options({ ca: otherPki.ca, dangerouslyDisableTlsVerification: true }),
    );
    await client.connect();
  });
});

describe("unreachable and silent brokers", () => {
  it("UNREACHABLE when nothing listens", async () => {
    const client = new BillingClient(options({ brokerPort: await freePort() }));
    await expect(client.connect()).rejects.toMatchObject({ code: "UNREACHABLE" });
  });

  it("TIMEOUT when the broker accepts TCP and never answers", async () => {
    const sockets: Socket[] = [];
    const silent = createServer((s) => sockets.push(s));
    silent.listen(0, "127.0.0.1");
    await once(silent, "listening");
    const port = (silent.address() as { port: number }).port;
    try {
      const client = new BillingClient(options({ brokerPort: port, connectTimeoutMs: 200 }));
      await expect(client.connect(5000)).rejects.toMatchObject({ code: "TIMEOUT" });
      // connect()'s own deadline, shorter than an attempt:
      await expect(client.connect(20)).rejects.toMatchObject({ code: "TIMEOUT" });
    } finally {
      for (const s of sockets) s.destroy();
      silent.close();
    }
  });

  it("keeps retrying after a failed first connect, and connect() tries at once", async () => {
    const port = await freePort();
    const client = new BillingClient(options({ brokerPort: port, reconnectBaseMs: 60_000 }));
    await expect(client.connect()).rejects.toMatchObject({ code: "UNREACHABLE" });
    const late = await AedesBroker.create({ pki, username: "svc", password: "s3cret" });
    await late.stop();
    late.port = port;
    await late.start();
    try {
      // The background retry is a minute away; connect() skips the wait.
      await client.connect();
      expect(client.isConnected()).toBe(true);
    } finally {
      await client.close();
      await late.close();
    }
  });

  it("fails over to the next broker of fallbackBrokers, round robin", async () => {
    const dead = await freePort();
    const client = new BillingClient(
      options({
        brokerPort: dead,
        fallbackBrokers: [{ host: "127.0.0.1", port: broker.port }],
        reconnectBaseMs: 20,
      }),
    );
    await expect(client.connect()).rejects.toMatchObject({ code: "UNREACHABLE" });
    await client.connect(); // the next attempt goes to the fallback, which is up
    expect(client.stats().broker).toBe(`127.0.0.1:${broker.port}`);
    await client.close();
    expect(() => new BillingClient(options({ fallbackBrokers: [{ host: "", port: 1 }] }))).toThrow(
      expect.objectContaining({ field: "fallbackBrokers[0]" }),
    );
  });
});
