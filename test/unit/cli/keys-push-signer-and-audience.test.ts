import { createHash, createPublicKey, verify } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { KeyUpdateSchema, SignedKeyUpdateSchema } from "../../../gen/billing/v1/usage_pb.js";
import { main } from "../../../src/cli/main.js";
import { BillingClient, getBillingClient } from "../../../src/index.js";
import { AedesBroker } from "../../helpers/aedes-broker.js";
import { captureIo } from "../../helpers/cli-io.js";
import { plainClientOptions } from "../../helpers/fixtures.js";
import { waitUntil } from "../../helpers/time.js";

// `keys push` tells which key it signed with (the signer and its public key's fingerprint, as
// `keys keygen` printed it), binds the update to an audience, refuses a public key given as the
// signing key, and refuses raw keys no request can carry, without showing them.

let broker: AedesBroker;
let dir: string;
let keysFile: string;
/** The fingerprint keygen printed for each pair. */
const printed: Record<string, string> = {};
beforeAll(async () => {
  broker = await AedesBroker.create();
  dir = mkdtempSync(join(tmpdir(), "billing-keys-push-"));
  keysFile = join(dir, "keys.json");
  writeFileSync(keysFile, JSON.stringify([{ key: "raw-key-1", appId: "app-1" }]));
  for (const pair of ["right", "wrong"]) {
    const c = captureIo();
    expect(await main(["keys", "keygen", "--out", join(dir, pair)], c.io)).toBe(0);
    const line = c.out.find((l) => l.startsWith("public key fingerprint: "));
    printed[pair] = (line ?? "").slice("public key fingerprint: ".length);
  }
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

const conn = () => ["--broker", `mqtt://127.0.0.1:${broker.port}`];
const privateOf = (pair: string) => join(dir, pair, "key-update-private.pem");
const publicOf = (pair: string) => readFileSync(join(dir, pair, "key-update-public.pem"), "utf8");
const lastOn = (topic: string) => {
  const p = broker.published.filter((m) => m.topic === topic).at(-1);
  const message = fromBinary(SignedKeyUpdateSchema, p?.payload as Buffer);
  return { message, update: fromBinary(KeyUpdateSchema, message.keyUpdate) };
};
/** The flags of a push signed with the right key (a function: `dir` is made in beforeAll). */
const signed = () => ["--signing-key", privateOf("right"), "--signer", "ops-backend"];
const push = async (...args: string[]) => {
  const c = captureIo();
  const code = await main(["keys", "push", ...args, ...conn()], c.io);
  return { code, out: c.out.join("\n"), err: c.err.join("\n") };
};

describe("keys keygen and keys push print one fingerprint", () => {
  it("keygen prints sha256: and the hex SHA-256 of the raw public key", () => {
    // Independently: the raw key is the last 32 bytes of the SPKI DER.
    const der = createPublicKey(publicOf("right")).export({ type: "spki", format: "der" });
    const expected = `sha256:${createHash("sha256").update(der.subarray(-32)).digest("hex")}`;
    expect(printed.right).toBe(expected);
    expect(printed.wrong).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(printed.wrong).not.toBe(printed.right);
  });

  it("push with the right key: the same fingerprint, and an SDK pinning that key applies it", async () => {
    const client = new BillingClient(
      plainClientOptions(broker.port, {
        keyUpdatePublicKeys: { "ops-backend": publicOf("right") },
      }),
    );
    await client.connect();
    const r = await push(keysFile, "--signing-key", privateOf("right"), "--signer", "ops-backend");
    expect(r.code).toBe(0);
    expect(r.out).toContain(`signer ops-backend: public key ${printed.right}`);
    await waitUntil(() => client.keys.loaded, 5000, "the pushed list");
  });

  it("push with a wrong private key still publishes, but prints the other fingerprint: the SDK refuses it", async () => {
    const client = new BillingClient(
      plainClientOptions(broker.port, {
        keyUpdatePublicKeys: { "ops-backend": publicOf("right") },
      }),
    );
    await client.connect();
    await waitUntil(() => broker.payloads("billing/keys/request").length > 0, 5000, "subscribed");
    const r = await push(keysFile, "--signing-key", privateOf("wrong"), "--signer", "ops-backend");
    expect(r.code).toBe(0);
    expect(r.out).toContain(`signer ops-backend: public key ${printed.wrong}`);
    expect(r.out).not.toContain(printed.right);
    await waitUntil(() => client.stats().keyUpdatesRefused.badSignature === 1, 5000, "refused");
    expect(client.keys.loaded).toBe(false);
  });

  it("--signing-key given the public key says so, and publishes nothing", async () => {
    const before = broker.published.length;
    const pub = join(dir, "right", "key-update-public.pem");
    const r = await push(keysFile, "--signing-key", pub, "--signer", "ops-backend");
    expect(r.code).toBe(2);
    expect(r.err).toContain(
      "--signing-key: is a public key; --signing-key needs the private key that keys keygen wrote",
    );
    expect(broker.published.length).toBe(before);
  });
});

describe("keys push --audience", () => {
  it("defaults to the topic prefix, is printed, and is part of the signed bytes", async () => {
    const r = await push(keysFile, ...signed());
    expect(r.out).toMatch(/audience "billing"/);
    const { message: s, update } = lastOn("billing/keys/update");
    expect(update.audience).toBe("billing");
    const key = createPublicKey(publicOf("right"));
    expect(verify(null, s.keyUpdate, key, s.signature)).toBe(true);
    const retargeted = toBinary(KeyUpdateSchema, { ...update, audience: "prod" });
    expect(verify(null, retargeted, key, s.signature)).toBe(false);

    expect((await push(keysFile, ...signed(), "--prefix", "tenant-a")).code).toBe(0);
    expect(lastOn("tenant-a/keys/update").update.audience).toBe("tenant-a");
  });

  it("--audience NAME sets it, signed or not; an empty or control-character name is refused", async () => {
    expect((await push(keysFile, ...signed(), "--audience", "staging")).out).toMatch(
      /audience "staging"/,
    );
    expect(lastOn("billing/keys/update").update.audience).toBe("staging");
    expect((await push(keysFile, "--insecure-unsigned", "--audience", "dev")).code).toBe(0);
    expect(lastOn("billing/keys/update").update.audience).toBe("dev");
    const before = broker.published.length;
    for (const bad of ["", "a\nb", "x".repeat(129)]) {
      const r = await push(keysFile, ...signed(), "--audience", bad);
      expect(r.code, JSON.stringify(bad)).toBe(2);
      expect(r.err).toMatch(/INVALID_ARGUMENT\] --audience: /);
    }
    expect(broker.published.length).toBe(before);
  });
});

describe("keys push refuses raw keys no request can carry", () => {
  const SECRET = "sk-live-7Qx9";
  it.each<[string, string, RegExp]>([
    ["a comma", `${SECRET},tail`, /keys\[1\]\.key: holds a comma at character 13 of 17/],
    ["a leading space", ` ${SECRET}`, /keys\[1\]\.key: starts with whitespace \(U\+0020\)/],
    ["a trailing tab", `${SECRET}\t`, /keys\[1\]\.key: ends with whitespace \(U\+0009\)/],
    ["a leading no-break space", `\u00a0${SECRET}`, /starts with whitespace \(U\+00A0\)/],
    ["a trailing newline", `${SECRET}\n`, /holds the control character U\+000A at character 13/],
    ["a NUL", `${SECRET}\u0000x`, /holds the control character U\+0000/],
    ["DEL", `${SECRET}\u007fx`, /holds the control character U\+007F/],
    ["a character above U+00FF", `${SECRET}\u20ac`, /holds U\+20AC at character 13 of 13/],
    ["a lone surrogate", `${SECRET}\ud800`, /holds U\+D800/],
  ])("%s: exit 2 naming the entry, never the key; nothing published", async (_, key, message) => {
    const file = join(dir, "bad-keys.json");
    writeFileSync(
      file,
      JSON.stringify([
        { key: "fine-key", appId: "a" },
        { key, appId: "b" },
      ]),
    );
    const before = broker.published.length;
    const r = await push(file, ...signed());
    expect(r.code).toBe(2);
    expect(r.err).toMatch(message);
    expect(r.out + r.err).not.toContain(SECRET);
    expect(r.out + r.err).not.toContain("tail");
    expect(broker.published.length).toBe(before);
  });

  it("keys a request can carry are pushed: a tab or a space inside, Latin-1 letters", async () => {
    const file = join(dir, "odd-keys.json");
    const keys = ["a\tb", "a b", "cl\u00e9", "x\u0085y", "!#$%&'*+-.^_`|~"];
    writeFileSync(file, JSON.stringify(keys.map((key) => ({ key, appId: "a" }))));
    expect((await push(file, ...signed())).code).toBe(0);
    expect(lastOn("billing/keys/update").update.keys.length).toBe(keys.length);
  });
});
