import type { BillingClient } from "./billing-client.js";

// The process-wide instance lives on globalThis under a registered symbol, so that two copies of
// the package in one process (a dependency bundling its own) still share one connection.
const INSTANCE = Symbol.for("billing-sdk.BillingClient");
const registry = globalThis as { [INSTANCE]?: BillingClient };

/** The process-wide `BillingClient`, or undefined when none is open. */
export function getBillingClient(): BillingClient | undefined {
  return registry[INSTANCE];
}

/** Makes `client` the process-wide one. */
export function register(client: BillingClient): void {
  registry[INSTANCE] = client;
}

/** Forgets `client` if it is the process-wide one. */
export function unregister(client: BillingClient): void {
  if (registry[INSTANCE] === client) delete registry[INSTANCE];
}
