import { expect, it } from "vitest";
import { runDemo } from "../../demo/demo.js";

// `npm run demo` is the README's first command: this runs the same code and checks its story.
it("the demo serves, refuses, bills, and reads the usage back from the database", async () => {
  const lines: string[] = [];
  const result = await runDemo({ print: (l) => lines.push(l) });
  // 3 a minute: a token bucket gives one back every 20 s, so the wait is at most 20 s.
  const wait = Number(/retry after (\d+) s/.exec(result.calls[7]?.code ?? "")?.[1]);
  expect(wait).toBeGreaterThan(15);
  expect(wait).toBeLessThanOrEqual(20);
  expect(result.calls.map((c) => c.code.replace(/after \d+ s/, "after N s"))).toEqual([
    "ok",
    "ok",
    "ok",
    "PermissionDenied: API key blocked: unpaid invoice",
    "Unauthenticated: missing API key",
    "Unauthenticated: API key expired",
    "PermissionDenied: API key may not call demo.v1.AiService/Chat",
    "ResourceExhausted: rate limit exceeded (retry after N s)",
    "ResourceExhausted: quota exhausted for llm",
  ]);
  expect(result.records.map((r) => [r.module, r.appId])).toEqual([
    ["llm", "demo-app"],
    ["tts", "demo-app"],
    ["asr", "demo-app"],
  ]);
  // The rollup holds the records' usage, per module and model.
  const total = (xs: Array<{ usage: string }>) => xs.reduce((s, x) => s + BigInt(x.usage), 0n);
  expect(total(result.rollup)).toBe(total(result.records));
  expect(result.rollup.reduce((n, r) => n + r.records, 0)).toBe(3);
  expect(result.stats).toMatchObject({ published: 3, queued: 0, keysKnown: 5 });
  expect(result.stats.decisions).toMatchObject({
    expired: 1,
    method_denied: 1,
    rate_limited: 1,
    quota_exhausted: 1,
  });
  const out = lines.join("\n");
  expect(out).toContain('"module":"asr"');
  expect(out).toMatch(/per minute .* demo-app {2}llm\/demo-gpt {2}usage \d+ {2}records 1/);
  expect(out).not.toContain("demo-key-good"); // never a raw key
}, 60_000);
