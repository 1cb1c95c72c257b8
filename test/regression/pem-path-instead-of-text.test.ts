import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { BillingClient, type BillingClientOptions, getBillingClient } from "../../src/index.js";
import { AedesBroker } from "../helpers/aedes-broker.js";
import { makePki, type TestPki } from "../helpers/certs.js";

// A path given where PEM text is expected (a newcomer's first hour, issue 10): the error says
// to pass the file's contents, and a missing CA says to give `ca`.

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

describe("ca, cert and key take PEM text, not a path", () => {
  it("a path is refused with INVALID_ARGUMENT that says to pass the file's contents", () => {
    for (const [field, extra] of [
      ["ca", { ca: "ca.pem" }],
      ["ca", { ca: ["./certs/ca.pem"] }],
      ["ca", { ca: Buffer.from("/etc/ssl/ca.pem") }],
      ["cert", { cert: "client.crt", key: pki.ca }],
      ["key", { cert: pki.ca, key: "client.key" }],
    ] as const) {
      let err: unknown;
      try {
        new BillingClient(base(extra as BillingClientOptions));
      } catch (e) {
        err = e;
      }
      expect(err, field).toMatchObject({ code: "INVALID_ARGUMENT", field });
      expect((err as Error).message).toMatch(/pass the file's contents: readFileSync\(/);
      expect(getBillingClient()).toBeUndefined();
    }
  });

  it("without `ca`, a broker with a private CA fails TLS with a hint at `ca`", async () => {
    const client = new BillingClient(base({ ca: undefined }));
    const err = await client.connect(3000).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "TLS" });
    expect((err as Error).message).toMatch(
      /system CAs: pass your broker's CA: the `ca` option.*--ca FILE/,
    );
    // With the CA the same client settings connect (positive control).
    await client.close(100).catch(() => {});
    const ok = new BillingClient(base());
    await ok.connect(3000);
  });
});
