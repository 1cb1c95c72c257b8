import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import ts from "typescript";
import { afterAll, expect, it } from "vitest";

// Every ```ts block of the README is type-checked against the real sources, so the README cannot
// rot (the Python SDK's README imported a name that did not exist). "billing-sdk" resolves to
// src/, and the example service to the test echo service.
const root = new URL("../..", import.meta.url).pathname;
const dir = join(root, "test", ".readme");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it("README TypeScript blocks compile", () => {
  const readme = readFileSync(join(root, "README.md"), "utf8");
  const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1] as string);
  expect(blocks.length).toBeGreaterThanOrEqual(3);
  mkdirSync(dir, { recursive: true });
  const files = blocks.map((code, i) => {
    const file = join(dir, `block-${i}.ts`);
    writeFileSync(
      file,
      code
        .replaceAll('"billing-sdk"', '"../../src/index.js"')
        .replaceAll('"./gen/echo/v1/echo_pb.js"', '"../gen/test/v1/echo_pb.js"'),
    );
    return file;
  });
  const program = ts.createProgram(files, {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: ["node"],
  });
  const problems = ts
    .getPreEmitDiagnostics(program)
    .map(
      (d) => `${d.file?.fileName ?? ""}: ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`,
    );
  expect(problems).toEqual([]);
});
