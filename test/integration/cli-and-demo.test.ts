import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CliIo } from "../../src/cli/cli-io.js";
import { main } from "../../src/cli/main.js";
import { runDemo } from "../demo/demo.js";
import { makePki, type TestPki } from "../helpers/certs.js";
import { Mosquitto } from "../helpers/mosquitto.js";
import { mosquittoAvailable } from "../helpers/require-broker.js";

// The CLI's doctor and the demo's --broker mode against a real mosquitto (MQTT 5, TLS, ACL).
const users = { svc: "svc-pass", nopub: "nopub-pass" };

describe.runIf(mosquittoAvailable())("CLI and demo on a real mosquitto", () => {
  let pki: TestPki;
  let broker: Mosquitto;
  let dir: string;
  let caFile: string;
  beforeAll(async () => {
    pki = makePki();
    broker = await Mosquitto.start({
      pki,
      users,
      acl: "user svc\ntopic readwrite billing/#\nuser nopub\ntopic read billing/#\n",
    });
    dir = mkdtempSync(join(tmpdir(), "billing-cli-int-"));
    caFile = join(dir, "ca.pem");
    writeFileSync(caFile, pki.ca);
  });
  afterAll(async () => {
    await broker?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const run = async (args: string[]) => {
    const out: string[] = [];
    const io: CliIo = { out: (l) => out.push(l), err: (l) => out.push(l), onInterrupt: () => {} };
    const code = await main(args, io);
    return { code, out: out.join("\n") };
  };
  const conn = (user: keyof typeof users) => [
    "--broker",
    `mqtts://127.0.0.1:${broker.tlsPort}`,
    "--ca",
    caFile,
    "--username",
    user,
    "--password",
    users[user],
  ];

  it("doctor reports a refused publish with its MQTT 5 reason", async () => {
    const r = await run(["doctor", "--wait-keys", "0.2", ...conn("nopub")]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/✓ MQTT +connected as "nopub" with MQTT 5/);
    expect(r.out).toMatch(/✗ publish +billing\/heartbeat: NOT_AUTHORIZED: .*Not authorized/);
  });

  it("the demo runs against a real broker with --broker", async () => {
    const lines: string[] = [];
    const result = await runDemo({
      broker: `mqtts://127.0.0.1:${broker.tlsPort}`,
      username: "svc",
      password: users.svc,
      ca: caFile,
      print: (l) => lines.push(l),
    });
    expect(result.calls.map((c) => c.code.split(":")[0])).toEqual([
      "ok",
      "ok",
      "ok",
      "PermissionDenied",
      "Unauthenticated",
    ]);
    expect(result.stats.protocolVersion).toBe(5);
    expect(result.records).toHaveLength(3);
  });
});
