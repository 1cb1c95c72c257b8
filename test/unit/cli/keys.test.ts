import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  KeyState,
  KeyUpdateSchema,
  SignedKeyUpdateSchema,
} from "../../../gen/billing/v1/usage_pb.js";
import { main } from "../../../src/cli/main.js";
import { BillingClient, getBillingClient, hashApiKey } from "../../../src/index.js";
import { AedesBroker } from "../../helpers/aedes-broker.js";
import { makePki, type TestPki } from "../../helpers/certs.js";
import { captureIo } from "../../helpers/cli-io.js";
import { tlsClientOptions } from "../../helpers/fixtures.js";
import { waitUntil } from "../../helpers/time.js";

// `billing-sdk keys keygen` and `keys push`, in-process, against an embedded TLS broker with a
// password; an SDK configured with the generated public key checks what was pushed.
let pki: TestPki;
let broker: AedesBroker;
let dir: string;
let caFile: string;
let keysFile: string;
beforeAll(async () => {
  pki = makePki();
  broker = await AedesBroker.create({ pki, username: "ops", password: "ops-pass" });
  dir = mkdtempSync(join(tmpdir(), "billing-cli-keys-"));
  caFile = join(dir, "ca.pem");
  writeFileSync(caFile, pki.ca);
  keysFile = join(dir, "keys.json");
  writeFileSync(
    keysFile,
    JSON.stringify([
      { key: "raw-key-1", appId: "app-1" },
      { key: "raw-key-2", appId: "app-2", state: "blocked", reason: "unpaid" },
      {
        apiKeySha256: hashApiKey("raw-key-3"),
        appId: "app-3",
        state: "active",
        expiresAt: "2031-02-03T04:05:06Z",
        allowedMethods: ["demo.v1.AiService/*"],
        rateLimits: [
          { limit: 10, windowSeconds: 1 },
          { limit: "100000", windowSeconds: 60, module: "llm" },
        ],
        quotas: [{ module: "llm", remaining: -7 }],
      },
    ]),
  );
});
afterAll(async () => {
  await broker.close();
  rmSync(dir, { recursive: true, force: true });
});
afterEach(async () => {
  await getBillingClient()
    ?.close(500)
    .catch(() => {});
});

const io = () => {
  const c = captureIo();
  return { ...c, cli: c.io };
};
const conn = () => [
  "--broker",
  `mqtts://127.0.0.1:${broker.port}`,
  "--ca",
  caFile,
  "--username",
  "ops",
  "--password",
  "ops-pass",
];
const pushed = () => broker.published.filter((p) => p.topic === "billing/keys/update");

/** An SDK that trusts `publicPem` as "ops-backend", subscribed and ready. */
async function sdk(publicPem: string) {
  const client = new BillingClient(
    tlsClientOptions(broker.port, pki.ca, "ops", "ops-pass", {
      keyUpdatePublicKeys: { "ops-backend": publicPem },
    }),
  );
  await client.connect();
  await waitUntil(() => broker.payloads("billing/keys/request").length > 0, 5000, "subscribed");
  return client;
}

describe("billing-sdk keys keygen", () => {
  it("writes an Ed25519 pair (private 0600), never overwrites, and needs --out", async () => {
    const out = join(dir, "pair");
    const a = io();
    expect(await main(["keys", "keygen", "--out", out], a.cli)).toBe(0);
    const priv = join(out, "key-update-private.pem");
    const pub = join(out, "key-update-public.pem");
    expect(statSync(priv).mode & 0o777).toBe(0o600);
    expect(readFileSync(priv, "utf8")).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect(readFileSync(pub, "utf8")).toMatch(/^-----BEGIN PUBLIC KEY-----/);
    expect(a.out.join("\n")).toContain("mode 0600");
    const before = readFileSync(priv, "utf8");
    const b = io();
    expect(await main(["keys", "keygen", "--out", out], b.cli)).toBe(1);
    expect(b.err.join("\n")).toMatch(/exist already: not overwritten/);
    expect(readFileSync(priv, "utf8")).toBe(before);
    expect(await main(["keys", "keygen"], io().cli)).toBe(2);
    const help = io();
    expect(await main(["keys", "keygen", "--help"], help.cli)).toBe(0);
    expect(help.out.join("\n")).not.toContain("--broker"); // no connection flags to explain
  });
});

describe("billing-sdk keys push", () => {
  const pair = () => join(dir, "pair");
  const signing = () => ["--signing-key", join(pair(), "key-update-private.pem")];

  it("refuses to push unsigned unless --insecure-unsigned, and checks its flags", async () => {
    const before = pushed().length;
    const a = io();
    expect(await main(["keys", "push", keysFile, ...conn()], a.cli)).toBe(2);
    expect(a.err.join("\n")).toMatch(/--signing-key.*keys keygen.*--insecure-unsigned/);
    const bad = [
      [...signing()], // no --signer
      [...signing(), "--signer", "ops-backend", "--version", "0"],
      [...signing(), "--signer", "ops-backend", "--version", "1.5"],
      [...signing(), "--signer", "ops-backend", "--version", "18446744073709551616"],
      [...signing(), "--signer", "bad\nname"],
      ["--signing-key", join(pair(), "key-update-public.pem"), "--signer", "ops-backend"],
      ["--signing-key", join(dir, "missing.pem"), "--signer", "ops-backend"],
      [...signing(), "--signer", "ops-backend", "--insecure-unsigned"],
    ];
    for (const flags of bad) {
      const b = io();
      expect(
        await main(["keys", "push", keysFile, ...flags, ...conn()], b.cli),
        flags.join(" "),
      ).toBe(2);
      expect(b.err.join("\n")).toMatch(/INVALID_ARGUMENT/);
    }
    for (const content of [
      "not json",
      "[{}]",
      JSON.stringify([{ key: "k".repeat(1025) }]),
      JSON.stringify([{ key: "k", expiresAt: "someday" }]),
      JSON.stringify([{ key: "k", allowedMethods: ["Say"] }]),
      JSON.stringify([{ key: "k", rateLimits: [{ limit: 1.5, windowSeconds: 1 }] }]),
      JSON.stringify([{ key: "k", rateLimits: [{ limit: 1, windowSeconds: 0 }] }]),
      JSON.stringify([{ key: "k", quotas: [{ module: "", remaining: 1 }] }]),
      JSON.stringify([{ key: "k", quotas: {} }]),
    ]) {
      const file = join(dir, "bad.json");
      writeFileSync(file, content);
      expect(
        await main(["keys", "push", file, ...signing(), "--signer", "x", ...conn()], io().cli),
      ).toBe(2);
    }
    expect(pushed().length).toBe(before); // nothing was published
  });

  it("signs and publishes a snapshot (not retained) that an SDK with the public key applies", async () => {
    const client = await sdk(readFileSync(join(pair(), "key-update-public.pem"), "utf8"));
    const a = io();
    const args = ["keys", "push", keysFile, ...signing(), "--signer", "ops-backend", ...conn()];
    expect(await main(args, a.cli)).toBe(0);
    expect(a.out[0]).toMatch(
      /^pushed 3 keys \(snapshot, version \d+, audience "billing", signed by ops-backend\) to billing\/keys\/update$/,
    );
    expect(a.out[1]).toMatch(/^signer ops-backend: public key sha256:[0-9a-f]{64} \(services/);
    await waitUntil(() => client.keys.loaded, 5000, "the pushed key list");
    expect(client.keys.lookup("raw-key-2")).toMatchObject({
      state: KeyState.BLOCKED,
      appId: "app-2",
      reason: "unpaid",
    });
    expect(client.keys.lookup("raw-key-3")?.appId).toBe("app-3");
    expect(client.keys.lookup("raw-key-3")?.rules).toMatchObject({
      expiresAtMs: Date.parse("2031-02-03T04:05:06Z"),
      plan: {
        limits: [
          { limit: 10, windowMs: 1000, module: "" },
          { limit: 100_000, windowMs: 60_000, module: "llm" },
        ],
        quotaModules: ["llm"],
      },
      quota: -7,
    });
    expect(client.keys.lookup("raw-key-1")?.rules).toBeUndefined();
    const last = pushed().at(-1);
    expect(last?.retain).toBe(false);
    expect(last?.payload.includes("raw-key-1")).toBe(false);
    const signed = fromBinary(SignedKeyUpdateSchema, last?.payload as Buffer);
    const update = fromBinary(KeyUpdateSchema, signed.keyUpdate);
    // Default version: the time in milliseconds.
    expect(Number(update.version)).toBeGreaterThan(Date.now() - 60_000);
    expect(signed.signature.length).toBe(64);
  });

  it("--retain and --version: a later SDK gets the list; an older version is refused there", async () => {
    const pub = readFileSync(join(pair(), "key-update-public.pem"), "utf8");
    const base = ["keys", "push", keysFile, ...signing(), "--signer", "ops-backend", ...conn()];
    const retained = io();
    expect(await main([...base, "--retain", "--version", "500"], retained.cli)).toBe(0);
    expect(pushed().at(-1)?.retain).toBe(true);
    expect(retained.err.join("\n")).toMatch(/set maxKeyListAgeMs on every service/);
    const client = new BillingClient(
      tlsClientOptions(broker.port, pki.ca, "ops", "ops-pass", {
        keyUpdatePublicKeys: { "ops-backend": pub },
      }),
    );
    await waitUntil(() => client.keys.loaded, 5000, "the retained key list");
    expect(client.stats().keysVersion).toBe("500");
    expect(await main([...base, "--version", "499"], io().cli)).toBe(0);
    await waitUntil(() => client.stats().keyUpdatesRefused.replayed === 1, 5000, "replay refused");
    expect(client.stats().keysVersion).toBe("500");
    // Clear the retained message for the next tests.
    await broker.publish("billing/keys/update", new Uint8Array(0), true);
  });

  it("--insecure-unsigned publishes unsigned: refused by an SDK that requires signatures", async () => {
    const client = await sdk(readFileSync(join(pair(), "key-update-public.pem"), "utf8"));
    const a = io();
    expect(await main(["keys", "push", keysFile, "--insecure-unsigned", ...conn()], a.cli)).toBe(0);
    expect(a.out[0]).toMatch(/UNSIGNED/);
    await waitUntil(() => client.stats().keyUpdatesRefused.missingSignature === 1, 5000, "refused");
    expect(client.keys.loaded).toBe(false);
  });

  it("tail --keys shows a key update with its signer, never a raw key", async () => {
    const a = io();
    const running = main(["tail", "--keys", "--count", "1", ...conn()], a.cli);
    await waitUntil(() => a.err.some((l) => l.startsWith("tail: listening")), 5000, "tail ready");
    const args = ["keys", "push", keysFile, ...signing(), "--signer", "ops-backend", ...conn()];
    expect(await main(args, io().cli)).toBe(0);
    expect(await running).toBe(0);
    const line = JSON.parse(a.out[0] as string);
    expect(line.message).toMatchObject({
      signer: "ops-backend",
      signature: "present, not verified",
    });
    expect(line.message.keyUpdate.keys[0].apiKeySha256).toBe(hashApiKey("raw-key-1"));
    expect(a.out.join("\n")).not.toContain("raw-key-1");
  });
});
