import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import ts from "typescript";
import { afterAll, describe, expect, it } from "vitest";
import { main } from "../../../src/cli/main.js";

// Every code block of the READMEs is exercised, so they cannot rot (the Python SDK's README
// imported a name that did not exist):
// - ```ts blocks are type-checked against the real sources ("billing-sdk" resolves to src/, the
//   example service to the test echo service);
// - ```bash blocks: every `npm run X` must be a script, every `npx billing-sdk …` must parse
//   (run with --help), every npm install names a real dependency.
const root = new URL("../../..", import.meta.url).pathname;
const dir = join(root, "test", ".readme");
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
  name: string;
  scripts: Record<string, string>;
  version: string;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  peerDependencies: Record<string, string>;
};

for (const readme of ["README.md", "README.zh-CN.md"]) {
  describe(readme, () => {
    const text = readFileSync(join(root, readme), "utf8");
    const blocks = (lang: string) =>
      [...text.matchAll(new RegExp(`\`\`\`${lang}\\n([\\s\\S]*?)\`\`\``, "g"))].map(
        (m) => m[1] as string,
      );

    it("opens with the two commands a newcomer runs", () => {
      const first = blocks("bash")[0] ?? "";
      expect(first).toMatch(/^npm ci && npm run demo\b/m);
      expect(first).toMatch(/^npm test\b/m);
    });

    it("TypeScript blocks compile", () => {
      const ts_blocks = blocks("ts");
      expect(ts_blocks.length).toBeGreaterThanOrEqual(4);
      mkdirSync(dir, { recursive: true });
      const files = ts_blocks.map((code, i) => {
        const file = join(dir, `${readme.replace(/\W/g, "_")}-${i}.ts`);
        writeFileSync(
          file,
          code
            .replaceAll('"billing-sdk"', '"../../src/index.js"')
            .replaceAll('"billing-sdk/spool"', '"../../src/spool/index.js"')
            .replaceAll('"billing-sdk/consumer"', '"../../src/consumer/index.js"')
            .replaceAll('"billing-sdk/postgres"', '"../../src/postgres/index.js"')
            .replaceAll('"billing-sdk/otel"', '"../../src/otel/index.js"')
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
          (d) =>
            `${d.file?.fileName ?? ""}: ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`,
        );
      expect(problems).toEqual([]);
    });

    it("shell blocks name real scripts, commands and packages", async () => {
      const lines = blocks("bash")
        .flatMap((b) => b.split("\n"))
        .map((l) => l.replace(/#.*$/, "").trim())
        .filter((l) => l !== "");
      let checked = 0;
      for (const line of lines) {
        for (const m of line.matchAll(/npm run (\S+)/g)) {
          expect(pkg.scripts, line).toHaveProperty([m[1] as string]);
          checked++;
        }
        const cli = /^npx billing-sdk (.+)$/.exec(line);
        if (cli) {
          const args = (cli[1] as string).split(/\s+/);
          const out: string[] = [];
          const code = await main([...args, "--help"], {
            out: (l) => out.push(l),
            err: (l) => out.push(l),
            onInterrupt: () => {},
          });
          expect(code, line).toBe(0);
          checked++;
        }
        const install = /npm install (.+?)(?: &&|$)/.exec(line);
        if (install) {
          for (const spec of (install[1] as string).split(/\s+/)) {
            if (spec.startsWith("-")) continue; // -D
            if (spec.endsWith(".tgz")) {
              // The packed tarball: the name `npm pack` gives this package.
              expect(spec.split("/").at(-1), line).toBe(`${pkg.name}-${pkg.version}.tgz`);
              checked++;
              continue;
            }
            const name = spec.replace(/@[^@/]*$/, "") || spec;
            const known =
              name === pkg.name ||
              name in pkg.dependencies ||
              name in pkg.devDependencies ||
              name in (pkg.peerDependencies ?? {});
            expect(known, `${line}: ${name}`).toBe(true);
            checked++;
          }
        }
      }
      expect(checked).toBeGreaterThan(5);
    });
  });
}
