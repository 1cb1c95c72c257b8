import { Code, type ConnectError } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { carryOver, type KeyRules, keyRulesOf } from "../../../src/keys/key-rules.js";
import { admitCall } from "../../../src/keys/rule-check.js";
import { active, errorOf, say, startRulesWorld } from "../../helpers/rules-world.js";

// A key's rate limits are a set: the same limits listed in another order (by a backend that
// builds the list from a hash map, say) keep their buckets; only a new or changed limit starts
// full.

let world: Awaited<ReturnType<typeof startRulesWorld>>;
beforeAll(async () => {
  world = await startRulesWorld();
  await world.pushKeys(true, [active("loaded")]);
});
afterAll(() => world.close());

const perHour = (limit: number, module = "") => ({ limit, windowSeconds: 3600, module });

describe("a pushed key list that lists the same limits in another order", () => {
  it("keeps every bucket: the exhausted request limit stays exhausted", async () => {
    const t = createConnectTransport({ baseUrl: world.server.url, httpVersion: "2" });
    const [a, b, c] = [perHour(2), perHour(1_000_000, "llm"), perHour(500, "tts")];
    await world.pushKeys(false, [active("reordered", { rateLimits: [a, b, c] })]);
    expect(await errorOf(say(t, "reordered"))).toBe("ok");
    expect(await errorOf(say(t, "reordered"))).toBe("ok");
    expect(await errorOf(say(t, "reordered"))).toMatchObject({ code: Code.ResourceExhausted });
    for (const order of [
      [b, c, a],
      [c, a, b],
      [a, c, b],
    ]) {
      await world.pushKeys(true, [active("loaded"), active("reordered", { rateLimits: order })]);
      const e = await errorOf(say(t, "reordered"));
      expect((e as ConnectError).code, JSON.stringify(order)).toBe(Code.ResourceExhausted);
      // The wait told is the request limit's (1,800 s for one token of 2 per hour), not a full bucket.
      expect(Number((e as ConnectError).metadata.get("retry-after"))).toBeGreaterThan(1700);
    }
  });

  it("a limit added beside them starts full; a changed one (another window) starts full", async () => {
    const t = createConnectTransport({ baseUrl: world.server.url, httpVersion: "2" });
    await world.pushKeys(false, [active("grown", { rateLimits: [perHour(1)] })]);
    expect(await errorOf(say(t, "grown"))).toBe("ok");
    expect(await errorOf(say(t, "grown"))).toMatchObject({ code: Code.ResourceExhausted });
    // A new usage limit in front of the old one: the old bucket still binds.
    await world.pushKeys(false, [active("grown", { rateLimits: [perHour(9, "llm"), perHour(1)] })]);
    expect(await errorOf(say(t, "grown"))).toMatchObject({ code: Code.ResourceExhausted });
    // The request limit changed (1 per hour → 1 per 2 hours): a new limit, a new bucket.
    await world.pushKeys(false, [
      active("grown", { rateLimits: [perHour(9, "llm"), { limit: 1, windowSeconds: 7200 }] }),
    ]);
    expect(await errorOf(say(t, "grown"))).toBe("ok");
  });
});

describe("carryOver, with an explicit clock", () => {
  const rules = (limits: { limit: number; windowSeconds: number; module?: string | undefined }[]) =>
    keyRulesOf({ rateLimits: limits }) as KeyRules;
  const admit = (r: KeyRules, at: number) => admitCall(r, "a.B/C", undefined, 0, at);

  it("matches each limit by (limit, window, module) wherever it moved", () => {
    const before = rules([perHour(3), perHour(10, "llm"), { limit: 3, windowSeconds: 60 }]);
    expect(admit(before, 0)).toBeUndefined(); // 3/h: 2 left; 3/min: 2 left
    expect(admit(before, 0)).toBeUndefined(); // 1 left each
    const after = rules([{ limit: 3, windowSeconds: 60 }, perHour(3), perHour(10, "llm")]);
    carryOver(before, after, 0);
    expect(after.buckets).toEqual([1, 0, 1, 0, 10, 0]);
  });

  it("duplicates: the copies that remain keep the emptiest buckets", () => {
    // Two copies of one limit: the second was added later, so the first is emptier.
    const before = rules([perHour(5), perHour(5)]);
    before.buckets = [5, 0, 1, 0];
    const one = rules([perHour(5)]);
    carryOver(before, one, 0);
    expect(one.buckets).toEqual([1, 0]); // the binding bucket stays, whichever copy held it
    const three = rules([perHour(5), perHour(5), perHour(5)]);
    carryOver(before, three, 0);
    expect(three.buckets).toEqual([1, 0, 5, 0, 5, 0]); // the third copy is new: full
  });

  it("compares buckets refilled to the same moment", () => {
    const before = rules([perHour(3600), perHour(3600)]);
    // 100 tokens just now, against 0 tokens an hour ago (full again by now).
    before.buckets = [100, 3_600_000, 0, 0];
    const after = rules([perHour(3600)]);
    carryOver(before, after, 3_600_000);
    expect(after.buckets).toEqual([100, 3_600_000]);
  });
});
