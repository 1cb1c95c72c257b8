import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KeyState } from "../../../gen/billing/v1/usage_pb.js";
import type { CliIo } from "../../../src/cli/cli-io.js";
import { main } from "../../../src/cli/main.js";
import { BillingClient, hashApiKey } from "../../../src/index.js";
import { AedesBroker } from "../../helpers/aedes-broker.js";
import { makePki, type TestPki } from "../../helpers/certs.js";
import { keyUpdate, tlsClientOptions } from "../../helpers/fixtures.js";
import { freePort } from "../../helpers/mosquitto.js";
import { waitUntil } from "../../helpers/time.js";

// The CLI, run in-process against an embedded TLS broker with a password.
let pki: TestPki;
let broker: AedesBroker;
let dir: string;
let caFile: string;
beforeAll(async () => {
  pki = makePki();
  broker = await AedesBroker.create({ pki, username: "ops", password: "ops-pass" });
  dir = mkdtempSync(join(tmpdir(), "billing-cli-"));
  caFile = join(dir, "ca.pem");
  writeFileSync(caFile, pki.ca);
});
afterAll(async () => {
  await broker.close();
  rmSync(dir, { recursive: true, force: true });
});

function io() {
  const out: string[] = [];
  const err: string[] = [];
  let interrupt: (() => void) | undefined;
  const cli: CliIo = {
    out: (l) => out.push(l),
    err: (l) => err.push(l),
    onInterrupt: (stop) => {
      interrupt = stop;
    },
  };
  return { cli, out, err, interrupt: () => interrupt?.() };
}
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

describe("billing-sdk CLI", () => {
  it("prints usage and help, and refuses unknown commands and flags with exit 2", async () => {
    const a = io();
    expect(await main(["--help"], a.cli)).toBe(0);
    expect(a.out.join("\n")).toContain("keys push");
    const b = io();
    expect(await main(["tail", "--help"], b.cli)).toBe(0);
    expect(b.out.join("\n")).toContain("--heartbeats");
    expect(await main(["nope"], io().cli)).toBe(2);
    expect(await main(["keys", "pull"], io().cli)).toBe(2);
    expect(await main(["doctor", "--bogus"], io().cli)).toBe(2);
    expect(await main([], io().cli)).toBe(2);
    expect(await main(["doctor", "--broker", "http://x"], io().cli)).toBe(2);
    expect(await main(["doctor", "--ca", join(dir, "missing.pem")], io().cli)).toBe(2);
    expect(await main(["keys", "push"], io().cli)).toBe(2);
  });

  it("ingest and usage: help, and bad usage with exit 2 before anything is opened", async () => {
    const a = io();
    expect(await main(["--help"], a.cli)).toBe(0);
    expect(a.out.join("\n")).toMatch(/ingest +consume usage records into PostgreSQL/);
    const b = io();
    expect(await main(["ingest", "--help"], b.cli)).toBe(0);
    expect(b.out.join("\n")).toMatch(/--fallback-broker URL[\s\S]*connection:/);
    const c = io();
    expect(await main(["usage", "--help"], c.cli)).toBe(0);
    expect(c.out.join("\n")).toContain("--since DURATION");
    expect(c.out.join("\n")).not.toContain("connection:"); // no broker involved
    const saved = process.env.BILLING_POSTGRES_URL;
    delete process.env.BILLING_POSTGRES_URL;
    try {
      for (const [args, field] of [
        [["ingest", ...conn()], "--postgres"],
        [["usage"], "--postgres"],
        [["ingest", "--postgres", "postgres://x/db", "--progress=-1"], "--progress"],
        [
          ["ingest", "--postgres", "postgres://x/db", "--fallback-broker", "http://x"],
          "--fallback-broker",
        ],
        [
          ["ingest", "--postgres", "postgres://x/db", "--fallback-broker", "mqtt://x"],
          "--fallback-broker",
        ],
        [["usage", "--postgres", "postgres://x/db", "--since", "5 minutes"], "--since"],
        [["usage", "--postgres", "mysql://x/db"], "connectionString"],
        [["usage", "--postgres", "postgres://x/db", "--schema", "No-Caps"], "schema"],
      ] as const) {
        const d = io();
        expect(await main([...args], d.cli), args.join(" ")).toBe(2);
        expect(d.err.join("\n")).toContain(`INVALID_ARGUMENT] ${field}`);
      }
    } finally {
      if (saved !== undefined) process.env.BILLING_POSTGRES_URL = saved;
    }
  });

  it("ingest and usage name an unreachable database, without its password, with exit 1", async () => {
    const port = await freePort();
    const url = `postgres://ops:db-secret@127.0.0.1:${port}/billing`;
    for (const args of [
      ["ingest", "--postgres", url, ...conn()],
      ["usage", "--postgres", url],
    ]) {
      const a = io();
      expect(await main(args, a.cli)).toBe(1);
      expect(a.err.join("\n")).toMatch(/UNREACHABLE.*postgres:\/\/ops@127\.0\.0\.1/);
      expect(a.err.join("\n")).not.toContain("db-secret");
    }
  });

  it("tail prints decoded records (and heartbeats) as JSON lines, never a raw key", async () => {
    const a = io();
    const running = main(["tail", "--heartbeats", "--count", "3", ...conn()], a.cli);
    await waitUntil(() => a.err.some((l) => l.startsWith("tail: listening")), 5000, "tail ready");
    const client = new BillingClient(tlsClientOptions(broker.port, pki.ca, "ops", "ops-pass"));
    await client.reportUsage({ apiKey: "secret-raw", module: "tts", model: "v", usage: 12 });
    await client.reportUsage({ apiKey: "secret-raw", module: "asr", model: "w", usage: 3 });
    await client.close(); // its STOPPED heartbeat is the third message
    expect(await running).toBe(0);
    const lines = a.out.map(
      (l) => JSON.parse(l) as { topic: string; message: Record<string, unknown> },
    );
    expect(lines.map((l) => l.topic)).toEqual([
      "billing/report",
      "billing/report",
      "billing/heartbeat",
    ]);
    expect(lines[0]?.message).toMatchObject({
      module: "tts",
      usage: "12",
      apiKeySha256: hashApiKey("secret-raw"),
    });
    expect(lines[2]?.message).toMatchObject({ state: "PRODUCER_STATE_STOPPED" });
    expect(a.out.join("\n")).not.toContain("secret-raw");
  });

  it("tail stops on Ctrl-C with 0 and on a lost connection with 1", async () => {
    const a = io();
    const running = main(["tail", "--keys", ...conn()], a.cli);
    await waitUntil(() => a.err.some((l) => l.startsWith("tail: listening")), 5000, "tail ready");
    a.interrupt();
    expect(await running).toBe(0);
    const b = io();
    const lost = main(["tail", ...conn()], b.cli);
    await waitUntil(() => b.err.some((l) => l.startsWith("tail: listening")), 5000, "tail ready");
    await broker.stop();
    expect(await lost).toBe(1);
    expect(b.err).toContain("tail: connection lost");
    await broker.start();
  });

  it("doctor explains each step: all good, then a wrong CA, a wrong password, no key list", async () => {
    await broker.publish("billing/keys/update", keyUpdate([], true));
    const good = io();
    // Aedes has no backend: answer the KeyListRequest as one would.
    const answer = (packet: { topic: string }, cb: () => void) => {
      if (packet.topic === "billing/keys/request") {
        broker.publish(
          "billing/keys/update",
          keyUpdate([{ key: "k", state: KeyState.ACTIVE }], true),
        );
      }
      cb();
    };
    broker.broker.subscribe("billing/keys/request", answer as never, () => {});
    expect(await main(["doctor", ...conn()], good.cli)).toBe(0);
    const text = good.out.join("\n");
    expect(text).toMatch(/✓ DNS/);
    expect(text).toMatch(/✓ TLS .*TLSv1\.[23].*verified/);
    expect(text).toMatch(/✓ MQTT .*"ops".*MQTT 3\.1\.1/);
    expect(text).toMatch(
      /✓ key list .*snapshot version \d+ with 1 keys arrived, carrying a signature by "test-backend" \(not verified here/,
    );
    broker.broker.unsubscribe("billing/keys/request", answer as never, () => {});

    const other = makePki();
    const otherCa = join(dir, "other.pem");
    writeFileSync(otherCa, other.ca);
    const badCa = io();
    const args = conn();
    args[3] = otherCa;
    expect(await main(["doctor", ...args], badCa.cli)).toBe(1);
    expect(badCa.out.at(-3)).toMatch(/✗ TLS +TLS: /);

    const badPass = io();
    const args2 = conn();
    args2[7] = "wrong";
    expect(await main(["doctor", ...args2], badPass.cli)).toBe(1);
    expect(badPass.out.join("\n")).toMatch(/✗ MQTT +NOT_AUTHORIZED/);
    expect(badPass.out.join("\n")).not.toContain("wrong"); // no password in the output

    // Under a prefix with no retained list and no backend, nobody answers the KeyListRequest.
    const noKeys = io();
    expect(
      await main(["doctor", "--wait-keys", "0.3", "--prefix", "nobody", ...conn()], noKeys.cli),
    ).toBe(1);
    expect(noKeys.out.at(-1)).toMatch(/✗ key list .*is the billing backend running/);
    expect(noKeys.out.join("\n")).toMatch(/✓ publish +nobody\/heartbeat/);
  });

  it("doctor on a closed port stops at TCP", async () => {
    const closed = io();
    expect(
      await main(["doctor", "--broker", `mqtt://127.0.0.1:${await freePort()}`], closed.cli),
    ).toBe(1);
    expect(closed.out.at(-1)).toMatch(/✗ TCP +UNREACHABLE/);
  });
});

describe("usage --since", () => {
  it("reads durations and all", async () => {
    const { sinceDate } = await import("../../../src/cli/show-usage.js");
    const now = Date.UTC(2026, 0, 1, 12);
    expect(sinceDate("90s", now)?.toISOString()).toBe("2026-01-01T11:58:30.000Z");
    expect(sinceDate("30m", now)?.toISOString()).toBe("2026-01-01T11:30:00.000Z");
    expect(sinceDate("1h", now)?.toISOString()).toBe("2026-01-01T11:00:00.000Z");
    expect(sinceDate("7d", now)?.toISOString()).toBe("2025-12-25T12:00:00.000Z");
    expect(sinceDate("all", now)).toBeUndefined(); // no bound: also records dated before 1970
    // Past year 1: refused as bad usage, not a crash of the date arithmetic.
    for (const bad of ["", "1", "h", "-1h", "1.5h", "1w", "999999999d"]) {
      expect(() => sinceDate(bad, now)).toThrow(expect.objectContaining({ field: "--since" }));
    }
  });
});
