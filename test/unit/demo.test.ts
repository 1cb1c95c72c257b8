import { expect, it } from "vitest";
import { runDemo } from "../demo/demo.js";

// `npm run demo` is the README's first command: this runs the same code and checks its story.
it("the demo serves, refuses and bills as it says", async () => {
  const lines: string[] = [];
  const result = await runDemo({ print: (l) => lines.push(l) });
  expect(result.calls.map((c) => c.code)).toEqual([
    "ok",
    "ok",
    "ok",
    "PermissionDenied: API key blocked: unpaid invoice",
    "Unauthenticated: missing API key",
  ]);
  expect(result.records.map((r) => [r.module, r.appId])).toEqual([
    ["llm", "demo-app"],
    ["tts", "demo-app"],
    ["asr", "demo-app"],
  ]);
  expect(result.stats).toMatchObject({ published: 3, queued: 0, keysKnown: 2 });
  const out = lines.join("\n");
  expect(out).toContain('"module":"asr"');
  expect(out).not.toContain("demo-key-good"); // never a raw key
});
