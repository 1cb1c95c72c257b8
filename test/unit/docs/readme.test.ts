import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import ts from "typescript";
import { afterAll, describe, expect, it } from "vitest";
import { readKeysFile } from "../../../src/cli/keys-push.js";
import { main } from "../../../src/cli/main.js";
import {
  anchors,
  codeBlocks,
  headings,
  relativeLinks,
  withoutComments,
} from "../../helpers/markdown.js";

// Every code block of the READMEs and of docs/ is exercised, so they cannot rot (the Python SDK's
// README imported a name that did not exist):
// - ```ts blocks are type-checked against the real sources ("billing-sdk" resolves to src/, the
//   example service to the test echo service);
// - ```bash blocks: every `npm run X` must be a script, every `npx billing-sdk …` must parse
//   (run with --help), every npm install names a real dependency;
// - ```json blocks of the key-sync pages are files `billing-sdk keys push` accepts.
// The Chinese README mirrors the English one (same sections, same code), and every relative link
// of the documentation leads to a file, and to a heading of it when it names one.
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
const read = (file: string) => readFileSync(join(root, file), "utf8");
const bodies = (file: string, lang: string) => codeBlocks(read(file), lang).map((b) => b.code);
/** A text's code blocks, each as its language and its lines without comments. */
const codeOf = (text: string) => codeBlocks(text).map((b) => `${b.lang}\n${withoutComments(b)}`);

/** docs/ and docs/zh-CN/ pages, relative to the root (docs/api/, TypeDoc's output, is not ours). */
const docPages = (sub: string): string[] =>
  readdirSync(join(root, sub), { withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith(".md"))
    .map((e) => `${sub}/${e.name}`)
    .sort();
const englishPages = docPages("docs");
const chinesePages = docPages("docs/zh-CN");
const allPages = ["README.md", "README.zh-CN.md", "CHANGELOG.md", ...englishPages, ...chinesePages];

/** Type-checks ```ts blocks of the given files in one program; returns the problems. */
function compileProblems(files: string[]): { count: number; problems: string[] } {
  mkdirSync(dir, { recursive: true });
  const sources = files.flatMap((md) =>
    bodies(md, "ts").map((code, i) => {
      const file = join(dir, `${md.replace(/\W/g, "_")}-${i}.ts`);
      writeFileSync(
        file,
        `${code
          .replaceAll('"billing-sdk"', '"../../src/index.js"')
          .replaceAll('"billing-sdk/spool"', '"../../src/spool/index.js"')
          .replaceAll('"billing-sdk/consumer"', '"../../src/consumer/index.js"')
          .replaceAll('"billing-sdk/postgres"', '"../../src/postgres/index.js"')
          .replaceAll('"billing-sdk/otel"', '"../../src/otel/index.js"')
          .replaceAll('"./gen/echo/v1/echo_pb.js"', '"../gen/test/v1/echo_pb.js"')}\nexport {};\n`,
      );
      return file;
    }),
  );
  const program = ts.createProgram(sources, {
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
  return { count: sources.length, problems };
}

/** Checks the ```bash lines of the given files; returns how many commands were checked. */
async function checkShell(files: string[]): Promise<number> {
  const lines = files
    .flatMap((md) => bodies(md, "bash"))
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
  return checked;
}

for (const readme of ["README.md", "README.zh-CN.md"]) {
  describe(readme, () => {
    it("opens with the two commands a newcomer runs", () => {
      const first = bodies(readme, "bash")[0] ?? "";
      expect(first).toMatch(/^npm ci && npm run demo\b/m);
      expect(first).toMatch(/^npm test\b/m);
    });

    it("TypeScript blocks compile", () => {
      // The quick starts: server.ts, client.ts, report.ts.
      const { count, problems } = compileProblems([readme]);
      expect(count).toBeGreaterThanOrEqual(3);
      expect(problems).toEqual([]);
    });

    it("shell blocks name real scripts, commands and packages", async () => {
      expect(await checkShell([readme])).toBeGreaterThan(5);
    });

    it("holds every block test/integration/fresh-project.test.ts copies into a new project", () => {
      const has = (lang: string, marker: string) =>
        bodies(readme, lang).some((code) => code.includes(marker));
      expect(has("proto", "package echo.v1")).toBe(true);
      expect(has("yaml", "protoc-gen-es")).toBe(true);
      expect(has("ts", "connectNodeAdapter")).toBe(true);
      expect(has("ts", "createConnectTransport")).toBe(true);
      expect(has("ts", "await reportUsage({")).toBe(true);
      expect(has("bash", "curl --http2-prior-knowledge")).toBe(true);
    });
  });
}

describe("docs/", () => {
  it("has the topic pages and the Chinese pages of the first hour", () => {
    expect(englishPages.length).toBeGreaterThanOrEqual(15);
    expect(chinesePages).toEqual(
      expect.arrayContaining(["docs/zh-CN/key-sync.md", "docs/zh-CN/consumer-and-postgres.md"]),
    );
  });

  it("TypeScript blocks of every page compile", () => {
    const { count, problems } = compileProblems([...englishPages, ...chinesePages]);
    expect(count).toBeGreaterThanOrEqual(10);
    expect(problems).toEqual([]);
  });

  it("no TypeScript example was lost when the README was split into docs/", () => {
    // The README held 11 ```ts blocks before; with the topic pages they are all still there.
    const english = ["README.md", ...englishPages].flatMap((md) => bodies(md, "ts"));
    expect(english.length).toBeGreaterThanOrEqual(11);
  });

  it("shell blocks of every page name real scripts, commands and packages", async () => {
    expect(await checkShell([...englishPages, ...chinesePages])).toBeGreaterThan(5);
  });

  it("the key-list JSON examples are files `billing-sdk keys push` accepts", () => {
    mkdirSync(dir, { recursive: true });
    const pages = ["docs/key-sync.md", "docs/zh-CN/key-sync.md"];
    for (const page of pages) {
      const examples = bodies(page, "json");
      expect(examples.length, page).toBeGreaterThanOrEqual(1);
      examples.forEach((json, i) => {
        const file = join(dir, `${page.replace(/\W/g, "_")}-${i}.json`);
        writeFileSync(file, json);
        const keys = readKeysFile(file);
        expect(keys.length, page).toBe((JSON.parse(json) as unknown[]).length);
        expect(
          keys.some((k) => k.rateLimits.length > 0 && k.quotas.length > 0),
          page,
        ).toBe(true);
      });
    }
  });
});

describe("README.zh-CN.md mirrors README.md", () => {
  const en = read("README.md");
  const zh = read("README.zh-CN.md");

  it("has the same sections: the same sequence of heading levels", () => {
    const levels = (text: string) => headings(text).map((h) => h.level);
    expect(levels(zh)).toEqual(levels(en));
    expect(levels(en).filter((l) => l === 2).length).toBeGreaterThanOrEqual(4);
  });

  it("has the same code blocks, but for their comments", () => {
    expect(codeOf(zh)).toEqual(codeOf(en));
  });
});

describe("the Chinese pages of docs/zh-CN", () => {
  it("show the code of their English page, but for comments", () => {
    for (const page of chinesePages) {
      const english = page.replace("docs/zh-CN/", "docs/");
      expect(existsSync(join(root, english)), page).toBe(true);
      const theirs = codeOf(read(english));
      for (const block of codeOf(read(page))) expect(theirs, `${page}: ${block}`).toContain(block);
    }
  });

  it("translate the key-sync and backend pages whole: the same sections and code blocks", () => {
    for (const name of ["key-sync.md", "consumer-and-postgres.md"]) {
      const en = read(`docs/${name}`);
      const zh = read(`docs/zh-CN/${name}`);
      expect(
        headings(zh).map((h) => h.level),
        name,
      ).toEqual(headings(en).map((h) => h.level));
      expect(codeOf(zh), name).toEqual(codeOf(en));
    }
  });
});

describe("links of the documentation", () => {
  it("every relative link leads to an existing file, and to a heading of it", () => {
    const broken: string[] = [];
    let checked = 0;
    for (const page of allPages) {
      for (const target of relativeLinks(read(page))) {
        const [path = "", anchor] = target.split("#");
        const file = path === "" ? page : relative(root, join(root, dirname(page), path));
        checked++;
        if (!existsSync(join(root, file))) {
          broken.push(`${page}: ${target} (no ${file})`);
          continue;
        }
        if (anchor !== undefined && anchor !== "") {
          if (!file.endsWith(".md")) broken.push(`${page}: ${target} (an anchor into ${file})`);
          else if (!anchors(read(file)).has(decodeURIComponent(anchor)))
            broken.push(`${page}: ${target} (no heading #${anchor} in ${file})`);
        }
      }
    }
    expect(broken).toEqual([]);
    expect(checked).toBeGreaterThan(50);
  });

  it("the README links every page of docs/", () => {
    const linked = new Set(relativeLinks(read("README.md")).map((t) => t.split("#")[0]));
    for (const page of englishPages) expect([...linked], page).toContain(page);
  });
});
