import { execFile } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";

// The guards `npm test` relies on: a wire-breaking proto edit fails `lint:proto`, and a gen/
// that does not match proto/ fails `check:gen`. Each runs the real npm scripts in a scratch copy.
const run = promisify(execFile);
const root = new URL("../../..", import.meta.url).pathname;
const scratch = mkdtempSync(join(tmpdir(), "billing-schema-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function copyProject(name: string): string {
  const dir = join(scratch, name);
  for (const f of [
    "proto",
    "gen",
    "buf.yaml",
    "buf.gen.yaml",
    "package.json",
    "test/proto",
    "test/gen",
    "test/buf.gen.yaml",
  ]) {
    cpSync(join(root, f), join(dir, f), { recursive: true });
  }
  return dir;
}

async function npmRun(dir: string, script: string): Promise<number> {
  const env = { ...process.env, PATH: `${join(root, "node_modules/.bin")}:${process.env.PATH}` };
  try {
    await run("npm", ["run", "-s", script], { cwd: dir, env });
    return 0;
  } catch (e) {
    return (e as { code: number }).code;
  }
}

function edit(file: string, from: string, to: string) {
  const text = readFileSync(file, "utf8");
  expect(text).toContain(from);
  writeFileSync(file, text.replace(from, to));
}

describe("schema guards", () => {
  it("lint:proto passes on the committed schema", async () => {
    expect(await npmRun(copyProject("clean"), "lint:proto")).toBe(0);
  });

  for (const [name, from, to] of [
    ["field type change", "uint64 usage = 6;", "int64 usage = 6;"],
    ["field number change", "string model = 5;", "string model = 15;"],
    ["field deletion", "  string producer = 9;\n}", "}"],
  ] as const) {
    it(`lint:proto fails on a ${name}`, async () => {
      const dir = copyProject(name.replaceAll(" ", "-"));
      edit(join(dir, "proto/billing/v1/usage.proto"), from, to);
      expect(await npmRun(dir, "lint:proto")).not.toBe(0);
    });
  }

  it("check:gen passes on the committed gen/ and fails on a hand edit", async () => {
    const dir = copyProject("gen");
    expect(await npmRun(dir, "check:gen")).toBe(0);
    edit(join(dir, "gen/billing/v1/usage_pb.ts"), "usage: bigint;", "usage: number;");
    expect(await npmRun(dir, "check:gen")).not.toBe(0);
  });
});
