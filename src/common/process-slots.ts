// The state billing-sdk keeps per process rather than per client or per interceptor, all in this
// file: the open `BillingClient` (and what it says if the process exits before it was closed),
// the decision counts of every `requireApiKey()` and the verifier caches that reported usage
// debits. Each slot has one owner that gives it its type (publisher/client/billing-client.ts,
// keys/decision-counts.ts, keys/usage-debits.ts); nothing else in src/ keeps state at module
// level that outlives the instances it serves.

// The open client lives on globalThis under a registered symbol, so that two copies of the
// package in one process (a dependency bundling its own) still share one connection.
const CLIENT = Symbol.for("billing-sdk.BillingClient");
const shared = globalThis as { [CLIENT]?: object };

// What the open client says if the process exits before it was closed (a CLI job that forgot
// close(), an event loop that emptied while the broker was unreachable): the records it still
// holds are lost in memory mode, and nothing else would say so.
let atExit: (() => void) | undefined;
let exitHooked = false;

/** The slot of the process-wide client (`getBillingClient()`). */
export const clientSlot = {
  /** The open client, or undefined when none is open. */
  get(): object | undefined {
    return shared[CLIENT];
  },
  /**
   * Makes `client` the process-wide one; `onExit` runs (synchronously) if the process exits
   * while it is registered.
   */
  set(client: object, onExit: () => void): void {
    shared[CLIENT] = client;
    atExit = onExit;
    if (!exitHooked) {
      exitHooked = true;
      process.on("exit", () => atExit?.());
    }
  },
  /**
   * Forgets `client` if it is the process-wide one. Its exit hook stays until another client
   * registers: a process that exits while `close()` still flushes says what it leaves behind (a
   * closed client has nothing pending and says nothing).
   */
  clear(client: object): void {
    if (shared[CLIENT] === client) delete shared[CLIENT];
  },
};

/** The other process-wide slots, each named by its one owner. */
type SlotName = "decisionCounts" | "verifierCaches";
const slots = new Map<SlotName, unknown>();

/** The process-wide value of slot `name`, made by `make` on first use. */
export function processSlot<T>(name: SlotName, make: () => T): T {
  if (!slots.has(name)) slots.set(name, make());
  return slots.get(name) as T;
}
