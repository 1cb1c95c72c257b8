import { describe, expect, it } from "vitest";
import { BillingError } from "../../../src/billing-error.js";
import { toBillingError } from "../../../src/mqtt/to-billing-error.js";

describe("toBillingError", () => {
  const code = (err: unknown) => toBillingError(err, "broker").code;
  it("maps connection failures to codes", () => {
    expect(code(Object.assign(new Error("x"), { code: 5 }))).toBe("NOT_AUTHORIZED");
    expect(code(Object.assign(new Error("x"), { code: 135 }))).toBe("NOT_AUTHORIZED");
    expect(code(Object.assign(new Error("x"), { code: 2 }))).toBe("PROTOCOL");
    expect(code(Object.assign(new Error("x"), { code: "ECONNREFUSED" }))).toBe("UNREACHABLE");
    expect(code(Object.assign(new Error("x"), { code: "SELF_SIGNED_CERT_IN_CHAIN" }))).toBe("TLS");
    expect(code(Object.assign(new Error("x"), { code: "ERR_TLS_CERT_ALTNAME_INVALID" }))).toBe(
      "TLS",
    );
    expect(code(Object.assign(new Error("x"), { code: "EPROTO" }))).toBe("TLS");
    expect(code(new Error("TLS not authorized"))).toBe("TLS");
    expect(code("weird")).toBe("UNREACHABLE");
    const be = new BillingError("TIMEOUT", "t");
    expect(toBillingError(be, "b")).toBe(be);
  });
});
