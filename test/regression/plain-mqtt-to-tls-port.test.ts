import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { CliIo } from "../../src/cli/cli-io.js";
import { main } from "../../src/cli/main.js";
import { BillingClient, type BillingClientOptions, getBillingClient } from "../../src/index.js";
import { AedesBroker } from "../helpers/aedes-broker.js";
import { makePki, type TestPki } from "../helpers/certs.js";

// Plain MQTT to a TLS port (a newcomer's first hour, issue 10): the client and doctor say the
// port may expect TLS.

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

describe("plain MQTT to a TLS port", () => {
  it("the client says the port may expect TLS", async () => {
    const client = new BillingClient(base({ tls: false, ca: undefined }));
    const err = await client.connect(3000).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "UNREACHABLE" });
    expect((err as Error).message).toMatch(/the port may expect TLS: use mqtts:\/\/ or tls: true/);
  });

  it("doctor says it too, after TCP succeeded", async () => {
    const out: string[] = [];
    const io: CliIo = { out: (l) => out.push(l), err: (l) => out.push(l), onInterrupt: () => {} };
    const code = await main(
      ["doctor", "--broker", `mqtt://127.0.0.1:${tlsBroker.port}`, "--username", "svc"],
      { ...io },
    );
    expect(code).toBe(1);
    const text = out.join("\n");
    expect(text).toMatch(/✓ TCP/);
    expect(text).toMatch(/✗ MQTT .*the port may expect TLS/);
  });
});
