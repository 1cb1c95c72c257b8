import { X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../../src/cli/main.js";
import { BillingClient, getBillingClient } from "../../../src/index.js";
import { AedesBroker } from "../../helpers/aedes-broker.js";
import { makePki, type TestPki } from "../../helpers/certs.js";
import { captureIo } from "../../helpers/cli-io.js";

// A `ca` that did not sign the broker's certificate, against embedded TLS brokers with real
// certificates: one that sends only its own certificate ("unable to verify the first
// certificate") and one that sends its CA along, as many deployments do ("self-signed
// certificate in certificate chain"). Either way the error must say that the broker's
// certificate is not signed by the `ca` given, name the file when the CLI read it, and point to
// `billing-sdk doctor`, which says who did sign it.
let pki: TestPki;
let other: TestPki;
let leafOnly: AedesBroker;
let withChain: AedesBroker;
let dir: string;
let otherCaFile: string;
const cnOf = (pem: string) => /CN=(.*)/.exec(new X509Certificate(pem).subject)?.[1] as string;

beforeAll(async () => {
  pki = makePki();
  other = makePki();
  leafOnly = await AedesBroker.create({ pki });
  withChain = await AedesBroker.create({ pki: { ...pki, serverCert: pki.serverCert + pki.ca } });
  dir = mkdtempSync(join(tmpdir(), "billing-wrong-ca-"));
  otherCaFile = join(dir, "other-ca.pem");
  writeFileSync(otherCaFile, other.ca);
});
afterAll(async () => {
  await leafOnly.close();
  await withChain.close();
  rmSync(dir, { recursive: true, force: true });
});

const brokers = () =>
  [
    ["only its own certificate", leafOnly, "unable to verify the first certificate"],
    ["its CA along", withChain, "self-signed certificate in certificate chain"],
  ] as const;

describe("a broker certificate not signed by the `ca` given", () => {
  it("BillingClient.connect() says so, names the option and suggests billing-sdk doctor", async () => {
    for (const [, broker, openssl] of brokers()) {
      const client = new BillingClient({
        brokerHost: "127.0.0.1",
        brokerPort: broker.port,
        ca: other.ca,
        heartbeatIntervalMs: 0,
        logger: () => {},
      });
      try {
        const err = (await client.connect().catch((e: unknown) => e)) as Error;
        expect(err).toMatchObject({ name: "BillingError", code: "TLS" });
        expect(err.message).toBe(
          `[TLS] TLS with broker 127.0.0.1:${broker.port} failed: the broker's certificate is not signed by the CA given in \`ca\` (${openssl}): pass the CA that issued the broker's certificate; \`billing-sdk doctor --broker mqtts://127.0.0.1:${broker.port} --ca FILE\` shows who issued it`,
        );
      } finally {
        await client.close(0).catch(() => {});
      }
    }
    expect(getBillingClient()).toBeUndefined();
  });

  it("the CLI names the --ca file it read", async () => {
    for (const [, broker, openssl] of brokers()) {
      const run = captureIo();
      const code = await main(
        ["tail", "--broker", `mqtts://127.0.0.1:${broker.port}`, "--ca", otherCaFile],
        run.io,
      );
      expect(code).toBe(1);
      expect(run.err.join("\n")).toBe(
        `tail: [TLS] TLS with broker 127.0.0.1:${broker.port} failed: the broker's certificate is not signed by the CA given in \`ca\` (read from ${otherCaFile}) (${openssl}): pass the CA that issued the broker's certificate; \`billing-sdk doctor --broker mqtts://127.0.0.1:${broker.port} --ca ${otherCaFile}\` shows who issued it`,
      );
    }
  });

  it("billing-sdk doctor says who issued the broker's certificate and what --ca holds", async () => {
    const issuer = cnOf(pki.ca);
    const given = cnOf(other.ca);
    expect(issuer).not.toBe(given);
    for (const [what, broker, openssl] of brokers()) {
      const run = captureIo();
      const code = await main(
        ["doctor", "--broker", `mqtts://127.0.0.1:${broker.port}`, "--ca", otherCaFile],
        run.io,
      );
      expect(code, what).toBe(1);
      const presented =
        broker === withChain
          ? `"localhost" issued by "${issuer}", then "${issuer}" issued by "${issuer}"`
          : `"localhost" issued by "${issuer}"`;
      expect(run.out.slice(-3), what).toEqual([
        `✗ TLS        TLS: TLS with broker 127.0.0.1:${broker.port} failed: the broker's certificate is not signed by the CA given in \`ca\` (read from ${otherCaFile}) (${openssl}): pass the CA that issued the broker's certificate`,
        `  the broker presents ${presented}`,
        `  --ca ${otherCaFile} holds "${given}", which did not sign that chain: pass the CA "${issuer}" (with any intermediate CA)`,
      ]);
    }
  });

  it("without --ca, doctor says the system CAs were used and which CA to pass", async () => {
    const run = captureIo();
    expect(await main(["doctor", "--broker", `mqtts://127.0.0.1:${leafOnly.port}`], run.io)).toBe(
      1,
    );
    expect(run.out.at(-3)).toMatch(/✗ TLS .*verified against the system CAs/);
    expect(run.out.at(-1)).toBe(
      `  no --ca given, so the system CAs were used: pass the CA "${cnOf(pki.ca)}" with --ca FILE`,
    );
  });

  it("the right CA still connects (the check is not a blanket refusal)", async () => {
    const caFile = join(dir, "ca.pem");
    writeFileSync(caFile, pki.ca);
    const run = captureIo();
    await main(
      [
        "doctor",
        "--wait-keys",
        "0",
        "--broker",
        `mqtts://127.0.0.1:${withChain.port}`,
        "--ca",
        caFile,
      ],
      run.io,
    );
    expect(run.out.join("\n")).toMatch(/✓ TLS .*verified/);
    expect(run.out.join("\n")).toMatch(/✓ MQTT/);
  });
});
