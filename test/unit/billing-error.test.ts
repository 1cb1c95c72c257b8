import { describe, expect, it } from "vitest";
import { BillingError } from "../../src/billing-error.js";

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
