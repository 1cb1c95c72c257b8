import { describe, expect, it } from "vitest";
import { BillingClient } from "../../../../src/index.js";
import { resolveOptions } from "../../../../src/publisher/client/options.js";
import {
  isLoopback,
  securityWarnings,
} from "../../../../src/publisher/client/security-warnings.js";
import { useEmbeddedBroker } from "../../../helpers/embedded-broker.js";

const suite = useEmbeddedBroker();
const { logs, options } = suite;

describe("security warnings", () => {
  const password = "secret";
  it("tls: false with a password to a broker off loopback warns once, naming the broker", () => {
    const o = resolveOptions({ brokerHost: "mqtt.internal.example", tls: false, password });
    const warnings = securityWarnings(o);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/clear text/);
    expect(warnings[0]).toContain("mqtt.internal.example:1883");
    expect(warnings[0]).not.toContain(password);
    // A fallback broker off loopback counts too.
    const f = resolveOptions({
      brokerHost: "127.0.0.1",
      fallbackBrokers: [{ host: "10.0.0.7" }],
      tls: false,
      password,
    });
    expect(securityWarnings(f)[0]).toContain("10.0.0.7:1883");
  });

  it("no warning on loopback, without a password, or with TLS", () => {
    for (const brokerHost of ["localhost", "127.0.0.1", "127.8.9.10", "::1", "[::1]"]) {
      expect(securityWarnings(resolveOptions({ brokerHost, tls: false, password }))).toEqual([]);
    }
    expect(securityWarnings(resolveOptions({ brokerHost: "mqtt.example", tls: false }))).toEqual(
      [],
    );
    expect(securityWarnings(resolveOptions({ brokerHost: "mqtt.example", password }))).toEqual([]);
    expect(isLoopback("127.0.0.1.example.com")).toBe(false);
    expect(isLoopback("localhost.evil.com")).toBe(false);
  });

  it("disabled TLS verification warns", () => {
    const o = resolveOptions({ dangerouslyDisableTlsVerification: true });
    expect(securityWarnings(o)[0]).toMatch(/verification is OFF/);
  });
});

// Issue 9.7: a loopback broker was warned about.
// ---- 7. tls: false with a password ---------------------------------------------------------------

describe("tls: false with a password", () => {
  // The positive case (a non-loopback host warns once) cannot be tested here without traffic to
  // a non-loopback address: it needs a pure function of (host, tls, password) to test apart.
  const plainTextWarning = (l: { level: string; msg: string }) =>
    (l.level === "warn" || l.level === "error") &&
    /password|plain ?text|clear ?text|unencrypted|tls/i.test(l.msg);

  for (const host of ["127.0.0.1", "localhost", "::1"]) {
    it(`no plain-text warning for a loopback broker (${host})`, async () => {
      const client = new BillingClient(
        options({ brokerHost: host, username: "u", password: "p", tls: false }),
      );
      await client.connect(5000).catch(() => {}); // ::1 may have no listener: the log is the point
      await client.close(1000).catch(() => {});
      expect(logs.filter(plainTextWarning)).toEqual([]);
      // Positive control: the same logger does receive the TLS warning the SDK already has.
      const insecure = new BillingClient(
        options({ tls: true, dangerouslyDisableTlsVerification: true, password: "p" }),
      );
      await insecure.close(0).catch(() => {});
      expect(logs.filter(plainTextWarning).length).toBeGreaterThan(0);
    });
  }
});
