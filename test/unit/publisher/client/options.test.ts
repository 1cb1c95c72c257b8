import { describe, expect, it } from "vitest";
import { BillingError } from "../../../../src/billing-error.js";
import { resolveOptions } from "../../../../src/publisher/client/options.js";
import { sameOptions } from "../../../../src/publisher/client/same-options.js";

describe("options", () => {
  it("fills defaults in one place", () => {
    const o = resolveOptions({});
    expect(o).toMatchObject({
      brokerHost: "localhost",
      brokerPort: 8883,
      tls: true,
      dangerouslyDisableTlsVerification: false,
      topicPrefix: "billing",
      protocolVersion: 5,
      maxQueued: 100_000,
      heartbeatIntervalMs: 10_000,
    });
    expect(o.clientId).toMatch(/^billing-.+-[0-9a-f]{8}$/);
    expect(resolveOptions({ tls: false }).brokerPort).toBe(1883);
  });

  for (const [name, bad] of [
    ["brokerHost", { brokerHost: "" }],
    ["brokerPort", { brokerPort: 70000 }],
    ["brokerPort", { brokerPort: 1.5 }],
    ["protocolVersion", { protocolVersion: 3 }],
    ["clientId", { clientId: "" }],
    ["topicPrefix", { topicPrefix: "billing/#" }],
    ["topicPrefix", { topicPrefix: "a//b" }],
    ["maxQueued", { maxQueued: 0 }],
    ["inFlightWindow", { inFlightWindow: 70000 }],
    ["heartbeatIntervalMs", { heartbeatIntervalMs: -1 }],
    ["cert", { cert: "x" }],
  ] as const) {
    it(`refuses a bad ${name}: ${JSON.stringify(bad)}`, () => {
      const err = (() => {
        try {
          resolveOptions(bad as never);
        } catch (e) {
          return e as BillingError;
        }
      })();
      expect(err).toBeInstanceOf(BillingError);
      expect(err?.code).toBe("INVALID_ARGUMENT");
      expect(err?.field).toBe(name);
    });
  }

  it("compares options with defaults applied", () => {
    expect(sameOptions({}, { brokerHost: "localhost", tls: true })).toBe(true);
    const pem = (s: string) => `-----BEGIN CERTIFICATE-----\n${s}\n-----END CERTIFICATE-----\n`;
    expect(sameOptions({ ca: Buffer.from(pem("x")) }, { ca: Buffer.from(pem("x")) })).toBe(true);
    expect(sameOptions({ ca: [pem("a")] }, { ca: [pem("a"), pem("b")] })).toBe(false);
    expect(sameOptions({}, { brokerPort: 1 })).toBe(false);
    expect(sameOptions({ clientId: "a" }, {})).toBe(false);
    expect(sameOptions({ logger: () => {} }, { logger: () => {} })).toBe(false);
  });
});
