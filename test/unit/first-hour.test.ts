import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { CliIo } from "../../src/cli/cli-io.js";
import { main } from "../../src/cli/main.js";
import { BillingClient, type BillingClientOptions, getBillingClient } from "../../src/index.js";
import { AedesBroker, until } from "../helpers/aedes-broker.js";
import { makePki, type TestPki } from "../helpers/certs.js";

// What a new user trips over in the first hour (issue 10): each mistake gets a message that says
// what to do.

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

describe("messages that say more", () => {
  it("a bad usage value is named in the error", async () => {
    const client = new BillingClient(base());
    for (const usage of [-1, 1.5, "150"]) {
      const err = await client
        .reportUsage({ apiKey: "k", module: "llm", model: "m", usage: usage as number })
        .catch((e: unknown) => e);
      expect((err as Error).message).toContain(String(usage === "150" ? "string" : usage));
    }
  });

  it("the logger says reconnected after connection lost", async () => {
    logs.length = 0;
    const client = new BillingClient(base());
    await client.connect(3000);
    await tlsBroker.stop();
    await until(() => logs.some((l) => l.includes("connection lost")), 5000, "lost");
    await tlsBroker.start();
    await until(() => logs.some((l) => /^info: reconnected to /.test(l)), 5000, "reconnected");
  });

  it("the CLI names an unknown command or subcommand", async () => {
    const run = async (args: string[]) => {
      const lines: string[] = [];
      const io: CliIo = {
        out: (l) => lines.push(l),
        err: (l) => lines.push(l),
        onInterrupt: () => {},
      };
      return { code: await main(args, io), text: lines.join("\n") };
    };
    const bogus = await run(["bogus"]);
    expect(bogus.code).toBe(2);
    expect(bogus.text).toMatch(/^billing-sdk: unknown command "bogus"/);
    const keys = await run(["keys", "--help"]);
    expect(keys.code).toBe(2);
    expect(keys.text).toMatch(/^billing-sdk keys: which subcommand\?/);
    expect(keys.text).toMatch(/keys push/);
    const keysBogus = await run(["keys", "shove"]);
    expect(keysBogus.text).toMatch(/^billing-sdk keys: unknown subcommand "shove"/);
  });
});
