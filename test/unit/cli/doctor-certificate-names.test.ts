import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../../src/cli/main.js";
import { AedesBroker } from "../../helpers/aedes-broker.js";
import { makePki } from "../../helpers/certs.js";
import { captureIo } from "../../helpers/cli-io.js";

// doctor prints names read from the broker's certificates, which come from a peer that may not
// be verified (a wrong CA, --insecure): a name carrying terminal escapes or a bidi override must
// not reach the terminal as it is (a review saw ESC sequences and U+202E printed raw).
const hostile = "evil\u202egnp.exe\u001b[2J\u001b[32mOK\u200b";
const hostileCa = "Trusted\u2067 CA\u0007\u2069";
let broker: AedesBroker;
let dir: string;
let otherCa: string;
beforeAll(async () => {
  broker = await AedesBroker.create({
    pki: makePki(["localhost", "127.0.0.1"], { server: hostile, ca: hostileCa }),
  });
  dir = mkdtempSync(join(tmpdir(), "billing-cert-names-"));
  otherCa = join(dir, "other-ca.pem");
  writeFileSync(otherCa, makePki().ca);
});
afterAll(async () => {
  await broker?.close();
  rmSync(dir, { recursive: true, force: true });
});

// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const unsafe = /[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2066-\u2069]/u;

describe("billing-sdk doctor and the names in an unverified certificate", () => {
  it("a wrong CA: the chain the broker presents is shown without control or bidi characters", async () => {
    const run = captureIo();
    const url = `mqtts://127.0.0.1:${broker.port}`;
    expect(await main(["doctor", "--broker", url, "--ca", otherCa], run.io)).toBe(1);
    const presents = run.out.find((l) => l.startsWith("  the broker presents"));
    expect(presents).toBe('  the broker presents "evilgnp.exe[2J[32mOK" issued by "Trusted CA"');
    expect([...run.out, ...run.err].filter((l) => unsafe.test(l))).toEqual([]);
    expect(run.out.at(-1)).toMatch(/pass the CA "Trusted CA" \(with any intermediate CA\)$/);
  });

  it("--insecure: the TLS line shows the names without control or bidi characters", async () => {
    const run = captureIo();
    const url = `mqtts://127.0.0.1:${broker.port}`;
    await main(["doctor", "--wait-keys", "0", "--broker", url, "--insecure"], run.io);
    const tls = run.out.find((l) => l.startsWith("✓ TLS"));
    expect(tls).toMatch(
      /^✓ TLS +TLSv1\.[23], certificate "evilgnp\.exe\[2J\[32mOK" by "Trusted CA", valid until .*, NOT verified \(--insecure\)$/,
    );
    expect([...run.out, ...run.err].filter((l) => unsafe.test(l))).toEqual([]);
  });
});
