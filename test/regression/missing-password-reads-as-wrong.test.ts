import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { BillingClient, type BillingClientOptions, getBillingClient } from "../../src/index.js";
import { AedesBroker } from "../helpers/aedes-broker.js";
import { makePki, type TestPki } from "../helpers/certs.js";

// A missing password (a newcomer's first hour, issue 10) is named as missing, not as wrong.

let pki: TestPki;
let tlsBroker: AedesBroker;
beforeAll(async () => {
  pki = makePki(["localhost", "127.0.0.1"]);
  tlsBroker = await AedesBroker.create({ pki, username: "svc", password: "svc-pass" });
});
afterAll(async () => tlsBroker.close());
afterEach(async () => {
  await getBillingClient()
    ?.close(100)
    .catch(() => {});
});

const logs: string[] = [];
const base = (extra: BillingClientOptions = {}): BillingClientOptions => ({
  brokerHost: "127.0.0.1",
  brokerPort: tlsBroker.port,
  username: "svc",
  password: "svc-pass",
  ca: pki.ca,
  heartbeatIntervalMs: 0,
  reconnectBaseMs: 50,
  reconnectMaxMs: 200,
  connectTimeoutMs: 3000,
  logger: (level, message) => logs.push(`${level}: ${message}`),
  ...extra,
});

describe("a missing password reads as missing, not as wrong", () => {
  it("NOT_AUTHORIZED says no password was given", async () => {
    const client = new BillingClient(base({ password: undefined }));
    const err = await client.connect(3000).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "NOT_AUTHORIZED" });
    expect((err as Error).message).toMatch(/no password was given.*BILLING_MQTT_PASSWORD/);
    await client.close(100).catch(() => {});
    // A wrong password does not say so.
    const wrong = new BillingClient(base({ password: "nope" }));
    const err2 = await wrong.connect(3000).catch((e: unknown) => e);
    expect(err2).toMatchObject({ code: "NOT_AUTHORIZED" });
    expect((err2 as Error).message).not.toMatch(/no password/);
    expect((err2 as Error).message).not.toContain("nope");
  });
});
