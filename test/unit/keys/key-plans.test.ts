import { describe, expect, it } from "vitest";
import { keyRulesOf } from "../../../src/keys/key-rules.js";

describe("plan ids", () => {
  it("share a plan only between equal rules (method order aside)", () => {
    const plan = (r: Parameters<typeof keyRulesOf>[0]) => keyRulesOf(r)?.plan;
    const a = plan({
      allowedMethods: ["a.B/C", "a.B/*"],
      rateLimits: [{ limit: 5, windowSeconds: 2 }],
    });
    expect(
      plan({ allowedMethods: ["a.B/*", "a.B/C"], rateLimits: [{ limit: 5, windowSeconds: 2 }] }),
    ).toBe(a);
    const others = [
      plan({ allowedMethods: ["a.B/C"], rateLimits: [{ limit: 5, windowSeconds: 2 }] }),
      plan({ allowedMethods: ["a.B/C", "a.B/*"], rateLimits: [{ limit: 5, windowSeconds: 20 }] }),
      plan({ allowedMethods: ["a.B/C", "a.B/*"], rateLimits: [{ limit: 52, windowSeconds: 2 }] }),
      plan({
        allowedMethods: ["a.B/C", "a.B/*"],
        rateLimits: [{ limit: 5, windowSeconds: 2, module: "x" }],
      }),
      plan({
        allowedMethods: ["a.B/C", "a.B/*"],
        rateLimits: [{ limit: 5, windowSeconds: 2 }],
        quotas: [{ module: "x", remaining: 1 }],
      }),
      plan({ rateLimits: [{ limit: 5, windowSeconds: 2, module: "x" }] }),
      plan({ quotas: [{ module: "x", remaining: 1 }] }),
    ];
    expect(new Set([a, ...others]).size).toBe(others.length + 1);
  });
});
