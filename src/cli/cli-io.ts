/** Where a command writes, and how it learns of Ctrl-C or SIGTERM (tests pass their own). */
export interface CliIo {
  out(line: string): void;
  err(line: string): void;
  onInterrupt(stop: () => void): void;
}
