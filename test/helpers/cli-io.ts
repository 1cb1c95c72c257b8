import type { CliIo } from "../../src/cli/cli-io.js";

/** A CliIo that keeps what a command writes, and lets the test press Ctrl-C. */
export function captureIo() {
  const out: string[] = [];
  const err: string[] = [];
  let interrupt: (() => void) | undefined;
  const io: CliIo = {
    out: (l) => out.push(l),
    err: (l) => err.push(l),
    onInterrupt: (stop) => {
      interrupt = stop;
    },
  };
  return {
    io,
    out,
    err,
    /** Everything written, stdout then stderr. */
    text: () => [...out, ...err].join("\n"),
    interrupt: () => interrupt?.(),
  };
}
