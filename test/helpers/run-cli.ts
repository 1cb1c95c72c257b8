import { spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";

const root = new URL("../..", import.meta.url).pathname;

/**
 * Runs `billing-sdk <args>` from the sources in a child process (node, tsx, `nodeArgs` first)
 * and resolves with its exit code and output once it has exited; killed after `timeoutMs`.
 */
export async function runCli(
  args: string[],
  nodeArgs: string[] = [],
  timeoutMs = 60_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(
    "node",
    [...nodeArgs, "--import", "tsx", join(root, "src/cli/main.ts"), ...args],
    { cwd: root, stdio: ["ignore", "pipe", "pipe"], timeout: timeoutMs, killSignal: "SIGKILL" },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const [code] = (await once(child, "exit")) as [number | null];
  return { code, stdout, stderr };
}
