import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectAsync } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CliIo } from "../../../src/cli/cli-io.js";
import { main } from "../../../src/cli/main.js";
import { runDemo } from "../../demo/demo.js";
import { makePki, type TestPki } from "../../helpers/certs.js";
import { Mosquitto } from "../../helpers/mosquitto.js";
import { mosquittoAvailable } from "../../helpers/require-broker.js";
import { sleep } from "../../helpers/time.js";

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
      acl: "user svc\ntopic readwrite #\nuser nopub\ntopic read billing/#\n",
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

  it("the demo runs against a real broker with --broker, on a prefix of its own: nothing under billing/ is touched", async () => {
    // A real service's view of the broker: everything under the default prefix.
    const watcher = await connectAsync({
      host: "127.0.0.1",
      port: broker.tlsPort,
      protocol: "mqtts",
      ca: pki.ca,
      username: "svc",
      password: users.svc,
      protocolVersion: 5,
    });
    const all: string[] = [];
    watcher.on("message", (topic) => all.push(topic));
    await watcher.subscribeAsync("#", { qos: 1 });
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
      "Unauthenticated",
      "PermissionDenied",
      "ResourceExhausted",
      "ResourceExhausted",
    ]);
    expect(result.stats.protocolVersion).toBe(5);
    expect(result.records).toHaveLength(3);
    await watcher.endAsync();
    // The first line says which prefix the demo uses; nothing reached billing/…
    expect(lines[0]).toMatch(/^demo +topic prefix "billing-demo-[0-9a-f]{6}"/);
    const prefix = /"(billing-demo-[0-9a-f]{6})"/.exec(lines[0] ?? "")?.[1] as string;
    expect(all.filter((t) => t.startsWith("billing/"))).toEqual([]);
    // … while the demo's own traffic did go through this broker (positive control).
    expect(all.filter((t) => t === `${prefix}/report`)).toHaveLength(3);
    expect(all).toContain(`${prefix}/keys/request`);
    // Asked to use the real prefix on a real broker, it refuses before touching anything.
    all.length = 0;
    const watcher2 = await connectAsync({
      host: "127.0.0.1",
      port: broker.tlsPort,
      protocol: "mqtts",
      ca: pki.ca,
      username: "svc",
      password: users.svc,
    });
    watcher2.on("message", (topic) => all.push(topic));
    await watcher2.subscribeAsync("#", { qos: 1 });
    await expect(
      runDemo({
        broker: `mqtts://127.0.0.1:${broker.tlsPort}`,
        username: "svc",
        password: users.svc,
        ca: caFile,
        prefix: "billing",
        print: () => {},
      }),
    ).rejects.toThrow(/--prefix billing on a real broker would answer real services/);
    await sleep(200);
    await watcher2.endAsync();
    expect(all).toEqual([]);
  });
});
