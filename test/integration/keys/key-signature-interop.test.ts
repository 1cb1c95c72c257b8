import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { connectAsync } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  KeyState,
  KeyUpdateSchema,
  SignedKeyUpdateSchema,
} from "../../../gen/billing/v1/usage_pb.js";
import { main } from "../../../src/cli/main.js";
import { BillingClient, KeyList, requireApiKey, signKeyUpdate } from "../../../src/index.js";
import { KeyUpdateGate } from "../../../src/keys/key-update-gate.js";
import { ed25519PublicKey } from "../../../src/keys/signed-key-update.js";
import { EchoService } from "../../gen/test/v1/echo_pb.js";
import { makePki } from "../../helpers/certs.js";
import { startEchoServer } from "../../helpers/echo-server.js";
import { keyUpdateMessage, TEST_AUDIENCE, tlsClientOptions } from "../../helpers/fixtures.js";
import { Mosquitto } from "../../helpers/mosquitto.js";
import { mosquittoAvailable } from "../../helpers/require-broker.js";
import { waitUntil } from "../../helpers/time.js";

// The signature format is the standard one, not ours alone: Ed25519 (RFC 8032) over the exact
// KeyUpdate bytes. Signatures made by OpenSSL and by Python's cryptography package (backed by
// OpenSSL too, but driven through an independent protobuf and key-loading stack) verify in the
// SDK, and the SDK's verify outside Node.
const PY = "/usr/bin/python3";
const SCRIPT = new URL("../../interop/sign_key_update.py", import.meta.url).pathname;
const PROTO = new URL("../../../proto", import.meta.url).pathname;

function toolsAvailable(): boolean {
  const ok = (cmd: string, args: string[]) =>
    spawnSync(cmd, args, { stdio: "ignore" }).status === 0;
  const have =
    ok("openssl", ["version"]) &&
    ok("protoc", ["--version"]) &&
    ok(PY, ["-c", "import cryptography, google.protobuf"]);
  if (!have && process.env.BILLING_SDK_REQUIRE_BROKERS === "1") {
    throw new Error(
      "openssl, protoc and /usr/bin/python3 with python3-cryptography and python3-protobuf are needed",
    );
  }
  if (!have)
    console.warn("SKIPPING signature interop: openssl, protoc or python3-cryptography missing");
  return have;
}

describe.runIf(toolsAvailable())("Ed25519 signatures made outside Node", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "billing-interop-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const path = (name: string) => join(dir, name);
  const gateFor = (signer: string, publicPem: string) => {
    const keys = new KeyList();
    const gate = new KeyUpdateGate(keys, {
      publicKeys: new Map([[signer, ed25519PublicKey("test", publicPem)]]),
      acceptUnsigned: false,
      maxKeys: 1000,
      maxBytes: 1_000_000,
      maxAgeMs: undefined,
      audience: TEST_AUDIENCE,
      acceptUnbound: false,
    });
    return { keys, gate };
  };

  it("openssl pkeyutl -sign -rawin: its signature verifies in the SDK, and the SDK's in openssl", async () => {
    execFileSync("openssl", ["genpkey", "-algorithm", "ed25519", "-out", path("k.pem")]);
    execFileSync("openssl", ["pkey", "-in", path("k.pem"), "-pubout", "-out", path("k.pub.pem")]);
    const data = toBinary(
      KeyUpdateSchema,
      keyUpdateMessage([{ key: "openssl-key", state: KeyState.ACTIVE, appId: "ossl" }], true),
    );
    writeFileSync(path("data"), data);
    execFileSync("openssl", [
      "pkeyutl",
      "-sign",
      "-rawin",
      "-inkey",
      path("k.pem"),
      "-in",
      path("data"),
      "-out",
      path("sig"),
    ]);
    const signature = readFileSync(path("sig"));
    expect(signature.length).toBe(64);
    const wrap = (keyUpdate: Uint8Array) =>
      toBinary(
        SignedKeyUpdateSchema,
        create(SignedKeyUpdateSchema, { keyUpdate, signature, signer: "ossl" }),
      );
    const { keys, gate } = gateFor("ossl", readFileSync(path("k.pub.pem"), "utf8"));
    const altered = Buffer.from(data);
    altered[5] = (altered[5] as number) ^ 0x01;
    expect(await gate.receive(wrap(altered))).toMatchObject({
      applied: false,
      reason: "badSignature",
    });
    expect(await gate.receive(wrap(data))).toMatchObject({ applied: true });
    gate.close();
    expect(keys.lookup("openssl-key")?.appId).toBe("ossl");

    // The other way: the SDK signs with OpenSSL's key file, openssl verifies.
    const signed = fromBinary(
      SignedKeyUpdateSchema,
      signKeyUpdate(keyUpdateMessage([], true), readFileSync(path("k.pem"), "utf8"), "ossl"),
    );
    writeFileSync(path("data2"), signed.keyUpdate);
    writeFileSync(path("sig2"), signed.signature);
    const verify = (sig: string) =>
      spawnSync("openssl", [
        "pkeyutl",
        "-verify",
        "-rawin",
        "-pubin",
        "-inkey",
        path("k.pub.pem"),
        "-in",
        path("data2"),
        "-sigfile",
        path(sig),
      ]);
    expect(verify("sig2").stdout.toString()).toContain("Signature Verified Successfully");
    expect(verify("sig").status).not.toBe(0); // and it is not a verifier that says yes to all
  });

  it.runIf(mosquittoAvailable())(
    "a Python backend (python3-cryptography, protoc classes) signs a snapshot a service applies",
    async () => {
      execFileSync("protoc", [`--python_out=${dir}`, "-I", PROTO, "billing/v1/usage.proto"]);
      // The key pair from billing-sdk keys keygen: PKCS#8 / SPKI PEM, which Python loads as is.
      const quiet = { out: () => {}, err: () => {}, onInterrupt: () => {} };
      expect(await main(["keys", "keygen", "--out", path("pair")], quiet)).toBe(0);
      const priv = path("pair/key-update-private.pem");
      const pub = readFileSync(path("pair/key-update-public.pem"), "utf8");
      const python = (args: string[], input?: Uint8Array) =>
        execFileSync(PY, [SCRIPT, ...args], { input, maxBuffer: 1 << 20 });
      const payload = python([
        "sign",
        priv,
        "py-backend",
        TEST_AUDIENCE,
        dir,
        "py-key-1",
        "py-key-2",
      ]);

      // The reverse direction first: Python verifies what the SDK signs.
      const ours = signKeyUpdate(
        keyUpdateMessage([], true, { version: 42n }),
        readFileSync(priv, "utf8"),
        "node",
      );
      expect(python(["verify", path("pair/key-update-public.pem"), dir], ours).toString()).toBe(
        "verified signer=node version=42 keys=0\n",
      );
      const forged = Buffer.from(ours);
      forged[6] = (forged[6] as number) ^ 0x01;
      expect(() => python(["verify", path("pair/key-update-public.pem"), dir], forged)).toThrow();

      // Python's snapshot through a real mosquitto to a service guarded by requireApiKey().
      const pki = makePki();
      const broker = await Mosquitto.start({ pki, users: { svc: "svc-pass" } });
      const server = await startEchoServer([requireApiKey()]);
      const backend = await connectAsync({
        host: "127.0.0.1",
        port: broker.tlsPort,
        protocol: "mqtts",
        ca: pki.ca,
        username: "svc",
        password: "svc-pass",
      });
      let asked = false; // the client asks for a snapshot once it is subscribed
      backend.on("message", () => {
        asked = true;
      });
      await backend.subscribeAsync("billing/keys/request", { qos: 1 });
      const client = new BillingClient(
        tlsClientOptions(broker.tlsPort, pki.ca, "svc", "svc-pass", {
          keyUpdatePublicKeys: { "py-backend": pub },
        }),
      );
      try {
        await waitUntil(() => asked, 10_000, "the client's KeyListRequest");
        await backend.publishAsync("billing/keys/update", payload, { qos: 1 });
        await waitUntil(() => client.keys.loaded, 10_000, "the Python-signed snapshot");
        const echo = createClient(EchoService, createGrpcTransport({ baseUrl: server.url }));
        const ok = await echo.say({ text: "hi" }, { headers: { "api-key": "py-key-2" } });
        expect(ok.appId).toBe("py-app");
        const refused = await echo
          .say({ text: "hi" }, { headers: { "api-key": "other" } })
          .catch((e: unknown) => ConnectError.from(e).code);
        expect(refused).toBe(Code.Unauthenticated);
      } finally {
        await backend.endAsync(true);
        await client.close(1000).catch(() => {});
        await server.close();
        await broker.close();
      }
    },
  );
});
