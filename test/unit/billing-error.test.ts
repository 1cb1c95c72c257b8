import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { BillingError } from "../../src/billing-error.js";
import { resolveOptions } from "../../src/publisher/client/options.js";
import { isLoopback, securityWarnings } from "../../src/publisher/client/security-warnings.js";

describe("BillingError", () => {
  it("keeps the message without its code prefix in rawMessage, the cause, and the field", () => {
    const cause = new Error("socket hang up");
    const e = new BillingError("UNREACHABLE", "broker x is unreachable", { cause });
    expect(e.message).toBe("[UNREACHABLE] broker x is unreachable");
    expect(e.rawMessage).toBe("broker x is unreachable");
    expect(e.cause).toBe(cause);
    expect(BillingError.invalid("usage", "bad").field).toBe("usage");
  });

  it("from() keeps a BillingError and wraps anything else, with the original as cause", () => {
    const e = new BillingError("TIMEOUT", "t");
    expect(BillingError.from(e)).toBe(e);
    const wrapped = BillingError.from(new Error("boom"), "SPOOL");
    expect(wrapped).toMatchObject({ code: "SPOOL", rawMessage: "boom" });
    expect(BillingError.from("text")).toMatchObject({ code: "PROTOCOL", rawMessage: "text" });
  });

  it("instanceof holds across two copies of the package, and not for look-alikes", async () => {
    // A second copy of the module, as a bundled dependency would load it.
    const copy = "../../src/billing-error.js?copy=2"; // a string: tsc does not resolve queries
    const other = (await import(/* @vite-ignore */ copy)) as {
      BillingError: typeof BillingError;
    };
    expect(other.BillingError).not.toBe(BillingError);
    const foreign = new other.BillingError("QUEUE_FULL", "full");
    expect(foreign).toBeInstanceOf(BillingError);
    expect(new BillingError("CLOSED", "c")).toBeInstanceOf(other.BillingError);
    expect(BillingError.from(foreign)).toBe(foreign);
    const lookalike = Object.assign(new Error("x"), { name: "BillingError", code: "NOPE" });
    expect(lookalike).not.toBeInstanceOf(BillingError);
    expect({ name: "BillingError", code: "CLOSED", rawMessage: "" }).not.toBeInstanceOf(
      BillingError,
    );
  });
});

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

describe("the CLI in a fresh clone", () => {
  it("runs from the sources with npm run cli, no build needed", () => {
    const root = new URL("../..", import.meta.url).pathname;
    const out = execFileSync("npm", ["run", "-s", "cli", "--", "doctor", "--help"], {
      cwd: root,
      encoding: "utf8",
    });
    expect(out).toMatch(/^billing-sdk doctor/m);
  });
});
