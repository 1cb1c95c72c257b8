import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { KeyState, KeyStatusSchema, KeyUpdateSchema } from "../../../gen/billing/v1/usage_pb.js";
import { hashApiKey, KeyList, signKeyUpdate } from "../../../src/index.js";
import { keyRulesOf, quotasLeft } from "../../../src/keys/key-rules.js";
import { MAX_KEY_ENTRY_BYTES } from "../../../src/keys/key-update-layout.js";
import { admitCall, debitUsage } from "../../../src/keys/rule-check.js";
import { keyUpdateMessage, testSigner } from "../../helpers/fixtures.js";

// The rules as data: what an update may carry, and the token bucket with an explicit clock.
describe("rules a key update may carry", () => {
  const sign = (rules: object) =>
    signKeyUpdate(
      create(KeyUpdateSchema, {
        version: 1n,
        snapshot: true,
        keys: [
          create(KeyStatusSchema, {
            apiKeySha256: hashApiKey("k"),
            state: KeyState.ACTIVE,
            ...rules,
          }),
        ],
      }),
      testSigner.privateKey,
      testSigner.name,
    );

  it.each<[string, object]>([
    ["keys[0].allowedMethods[0]", { allowedMethods: ["Say"] }],
    ["keys[0].allowedMethods[0]", { allowedMethods: ["pkg.Svc/"] }],
    ["keys[0].rateLimits[0].limit", { rateLimits: [{ limit: 0n, windowSeconds: 1 }] }],
    ["keys[0].rateLimits[0].windowSeconds", { rateLimits: [{ limit: 5n, windowSeconds: 0 }] }],
    [
      "keys[0].rateLimits[0].module",
      { rateLimits: [{ limit: 5n, windowSeconds: 1, module: "a\nb" }] },
    ],
    ["keys[0].quotas[0].module", { quotas: [{ module: "", remaining: 5n }] }],
  ])("refuses a bad %s", (field, rules) => {
    expect(() => sign(rules)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(() => sign(rules)).toThrow(field);
  });

  it("refuses a key that encodes to more than MAX_KEY_ENTRY_BYTES (clients refuse it), signs one just under", () => {
    const methods = (n: number) =>
      Array.from({ length: n }, (_, i) => `pkg.v1.Service${String(i).padStart(100, "0")}/*`);
    // ~120 bytes a method: 540 fit in 64 KB, 560 do not.
    expect(sign({ allowedMethods: methods(540) }).length).toBeLessThan(MAX_KEY_ENTRY_BYTES);
    expect(() => sign({ allowedMethods: methods(560) })).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT", field: "update.keys[0]" }),
    );
    expect(() => sign({ allowedMethods: methods(560) })).toThrow(/MAX_KEY_ENTRY_BYTES/);
  });

  it("signs a limit above 2^53-1 (the client keeps it as 2^53-1)", () => {
    expect(
      sign({ rateLimits: [{ limit: 2n ** 64n - 1n, windowSeconds: 1 }] }).length,
    ).toBeGreaterThan(0);
  });

  it("accepts well-formed rules, and a key without rules costs no rules object", () => {
    const list = new KeyList();
    list.apply(
      keyUpdateMessage(
        [
          { key: "plain", state: KeyState.ACTIVE },
          {
            key: "ruled",
            state: KeyState.ACTIVE,
            allowedMethods: ["a.v1.S/*", "b.v1.T/M"],
            rateLimits: [{ limit: 3, windowSeconds: 2 }],
            quotas: [{ module: "llm", remaining: -2 }],
            expiresAtMs: 4_000_000_000_000,
          },
        ],
        true,
      ),
    );
    expect(list.rulesOf(hashApiKey("plain"))).toBeUndefined();
    const r = list.rulesOf(hashApiKey("ruled"));
    expect(r).toMatchObject({ expiresAtMs: 4_000_000_000_000, quota: -2 });
    expect(r?.plan.limits).toEqual([{ limit: 3, windowMs: 2000, module: "" }]);
  });

  it("keys with the same limits and methods share them (interned)", () => {
    const a = keyRulesOf({
      allowedMethods: ["x.S/*"],
      rateLimits: [{ limit: 9, windowSeconds: 9 }],
    });
    const b = keyRulesOf({
      allowedMethods: ["x.S/*"],
      rateLimits: [{ limit: 9, windowSeconds: 9 }],
    });
    expect(a?.plan).toBe(b?.plan);
    expect(a).not.toBe(b);
  });
});

describe("admitCall with an explicit clock", () => {
  const wall = 1_000_000;

  it("the order: expired, then method, then rate limit, then quota", () => {
    const all = () =>
      keyRulesOf({
        expiresAtMs: wall,
        allowedMethods: ["a.S/M"],
        rateLimits: [{ limit: 1, windowSeconds: 10 }],
        quotas: [{ module: "llm", remaining: 0 }],
      });
    const r = all();
    if (r === undefined) throw new Error("rules");
    expect(admitCall(r, "a.S/M", undefined, wall, 0)).toEqual({ outcome: "expired" });
    expect(admitCall(r, "a.S/X", undefined, wall - 1, 0)).toEqual({ outcome: "method_denied" });
    r.buckets = [0, 0];
    expect(admitCall(r, "a.S/M", undefined, wall - 1, 0)).toEqual({
      outcome: "rate_limited",
      retryAfterSeconds: 10,
    });
    expect(admitCall(r, "a.S/M", undefined, wall - 1, 10_000)).toEqual({
      outcome: "quota_exhausted",
      module: "llm",
    });
  });

  it("a token bucket: limit at once, then one per window/limit; refused calls take nothing", () => {
    const r = keyRulesOf({ rateLimits: [{ limit: 5, windowSeconds: 2 }] });
    if (r === undefined) throw new Error("rules");
    for (let i = 0; i < 5; i++) expect(admitCall(r, "a.S/M", undefined, 0, 100)).toBeUndefined();
    expect(admitCall(r, "a.S/M", undefined, 0, 100)).toMatchObject({ retryAfterSeconds: 1 });
    expect(admitCall(r, "a.S/M", undefined, 0, 499)).toMatchObject({ outcome: "rate_limited" });
    expect(admitCall(r, "a.S/M", undefined, 0, 500)).toBeUndefined(); // 400 ms: one token
    expect(admitCall(r, "a.S/M", undefined, 0, 600)).toMatchObject({ outcome: "rate_limited" });
    // After a whole window the bucket is full again (never more than the limit).
    let n = 0;
    while (admitCall(r, "a.S/M", undefined, 0, 100_000) === undefined) n++;
    expect(n).toBe(5);
  });

  it("usage limits and quotas count only their module; moduleOf narrows what a call checks", () => {
    const r = keyRulesOf({
      rateLimits: [{ limit: 100, windowSeconds: 60, module: "llm" }],
      quotas: [{ module: "tts", remaining: 10 }],
    });
    if (r === undefined) throw new Error("rules");
    debitUsage(r, "llm", 130, 0);
    debitUsage(r, "tts", 10, 0);
    debitUsage(r, "asr", 1000, 0);
    expect(quotasLeft(r)).toEqual([0]);
    expect(admitCall(r, "a.S/M", undefined, 0, 0)).toEqual({
      outcome: "rate_limited",
      retryAfterSeconds: 18, // 30 in debt at 100 per 60 s
    });
    expect(admitCall(r, "a.S/M", "tts", 0, 0)).toEqual({
      outcome: "quota_exhausted",
      module: "tts",
    });
    expect(admitCall(r, "a.S/M", "asr", 0, 0)).toBeUndefined();
  });

  it("several quotas: each module its own figure; the one at 0 refuses", () => {
    const r = keyRulesOf({
      quotas: [
        { module: "llm", remaining: 10 },
        { module: "tts", remaining: 3 },
        { module: "asr", remaining: 2n },
      ],
    });
    if (r === undefined) throw new Error("rules");
    debitUsage(r, "tts", 3, 0);
    debitUsage(r, "llm", 4, 0);
    expect(quotasLeft(r)).toEqual([6, 0, 2]);
    expect(admitCall(r, "a.S/M", undefined, 0, 0)).toEqual({
      outcome: "quota_exhausted",
      module: "tts",
    });
    expect(admitCall(r, "a.S/M", "asr", 0, 0)).toBeUndefined();
  });
});
