import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";

// Small files and short functions (STYLE.md), checked: no file in src/ over 300 lines, no
// function over 80 (from its first line to its last, the functions inside it included).
const root = new URL("../..", import.meta.url).pathname;
const MAX_FILE_LINES = 300;
const MAX_FUNCTION_LINES = 80;

// Functions over the bound when the check came. Each was being changed by work done in parallel:
// split it once that work is merged, then drop it here (the last test says when).
function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return path.endsWith(".ts") ? [path] : [];
  });
}

/** The name a function goes by: its own, or the variable or property it is assigned to. */
function nameOf(node: ts.SignatureDeclaration, file: ts.SourceFile): string {
  if (node.name !== undefined) return node.name.getText(file);
  const parent = node.parent;
  if (ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent)) {
    return parent.name.getText(file);
  }
  return `<anonymous at line ${file.getLineAndCharacterOfPosition(node.getStart(file)).line + 1}>`;
}

interface Measured {
  file: string;
  lines: number;
  functions: Array<{ name: string; lines: number }>;
}

/** The functions of a source text, each with its length in lines. */
function functionsOf(file: string, text: string): Measured["functions"] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true);
  const lineOf = (pos: number) => source.getLineAndCharacterOfPosition(pos).line;
  const functions: Measured["functions"] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isFunctionLike(node) && "body" in node && node.body !== undefined) {
      const lines = lineOf(node.end) - lineOf(node.getStart(source)) + 1;
      functions.push({ name: `${file}: ${nameOf(node, source)}`, lines });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return functions;
}

const measured: Measured[] = sourceFiles(join(root, "src")).map((path) => {
  const text = readFileSync(path, "utf8");
  const file = relative(root, path);
  const lines = text.split("\n").length - (text.endsWith("\n") ? 1 : 0);
  return { file, lines, functions: functionsOf(file, text) };
});

describe("the size of src/", () => {
  it(`no file is over ${MAX_FILE_LINES} lines`, () => {
    const long = measured
      .filter((m) => m.lines > MAX_FILE_LINES)
      .map((m) => `${m.file}: ${m.lines}`);
    expect(long).toEqual([]);
  });

  it(`no function is over ${MAX_FUNCTION_LINES} lines`, () => {
    const long = measured
      .flatMap((m) => m.functions)
      .filter((f) => f.lines > MAX_FUNCTION_LINES)
      .map((f) => `${f.name} (${f.lines} lines)`);
    expect(long, "split these into named steps").toEqual([]);
  });

  it("measures every source file, nested folders and their functions included", () => {
    const files = measured.map((m) => m.file);
    expect(files).toContain("src/index.ts");
    expect(files).toContain("src/publisher/pipeline/send-pipeline.ts");
    const names = measured.flatMap((m) => m.functions).map((f) => f.name);
    expect(names).toContain("src/publisher/client/close-on-signals.ts: closeOnSignals");
  });

  it("the measure counts a function from its first line to its last, nested ones included", () => {
    const body = Array.from({ length: 79 }, (_, i) => `  const v${i} = () => ${i};`).join("\n");
    const text = `export function outer() {\n${body}\n}\nconst short = () => {\n  return 1;\n};\n`;
    expect(functionsOf("x.ts", text)).toEqual([
      { name: "x.ts: outer", lines: 81 },
      ...Array.from({ length: 79 }, (_, i) => ({ name: `x.ts: v${i}`, lines: 1 })),
      { name: "x.ts: short", lines: 3 },
    ]);
  });
});
