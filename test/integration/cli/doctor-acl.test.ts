import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CliIo } from "../../../src/cli/cli-io.js";
import { main } from "../../../src/cli/main.js";
import { Mosquitto } from "../../helpers/mosquitto.js";
import { mosquittoAvailable } from "../../helpers/require-broker.js";

// doctor probes publish permission on <prefix>/keys/request (issue 9.9): the ACL lets doc read
// and publish heartbeats, not key-list requests (PUBACK 0x87 on billing/keys/request).

const users = { doc: "doc-pass" };
const acl = ["user doc", "topic read billing/#", "topic write billing/heartbeat", ""].join("\n");

describe.runIf(mosquittoAvailable())("doctor against a real mosquitto with an ACL (MQTT 5)", () => {
  let broker: Mosquitto;
  beforeAll(async () => {
    broker = await Mosquitto.start({
      users,
      acl,
      // Receive maximum 256 (mosquitto's default is 20): the SDK's default window fits.
      extra: ["max_inflight_messages 256"],
    });
  });
  afterAll(async () => {
    await broker?.close();
  });

  it("doctor reports a failed publish line for billing/keys/request when the ACL denies it", async () => {
    const out: string[] = [];
    const err: string[] = [];
    const io: CliIo = { out: (l) => out.push(l), err: (l) => err.push(l), onInterrupt: () => {} };
    const code = await main(
      [
        "doctor",
        "--wait-keys",
        "0.2",
        "--broker",
        `mqtt://127.0.0.1:${broker.plainPort}`,
        "--username",
        "doc",
        "--password",
        users.doc,
      ],
      io,
    );
    const text = out.join("\n");
    // Positive control: MQTT 5 is in use and the allowed topic is probed and passes.
    expect(text).toMatch(/✓ MQTT .*MQTT 5/);
    expect(text).toMatch(/✓ publish +billing\/heartbeat: PUBACK success/);
    expect(text, "doctor output").toMatch(/✗ publish +.*billing\/keys\/request/);
    expect(code).toBe(1);
  });
});
