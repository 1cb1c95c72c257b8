import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { CliIo } from "../../src/cli/cli-io.js";
import { main } from "../../src/cli/main.js";
import { BillingClient, type BillingClientOptions, getBillingClient } from "../../src/index.js";
import { AedesBroker } from "../helpers/aedes-broker.js";
import { makePki, type TestPki } from "../helpers/certs.js";
import { waitUntil } from "../helpers/time.js";

// Messages that said too little (a newcomer's first hour, issue 10): each names what to do.

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
    await waitUntil(() => logs.some((l) => l.includes("connection lost")), 5000, "lost");
    await tlsBroker.start();
    await waitUntil(() => logs.some((l) => /^info: reconnected to /.test(l)), 5000, "reconnected");
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
