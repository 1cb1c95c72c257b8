import { type BillingClient, getBillingClient } from "../publisher/index.js";
import type { KeySource } from "./key-source.js";

/**
 * The key list the billing backend pushes, of `client` or, when none is given, of the
 * process-wide `BillingClient` at call time. Not loaded (calls refused `Unavailable`) until a
 * snapshot has arrived, while the list is stale (`maxKeyListAgeMs`), or when there is no client.
 */
export function pushedKeySource(client?: BillingClient): KeySource {
  const current = () => client ?? getBillingClient();
  return {
    loaded: () => {
      const keys = current()?.keys;
      keys?.noteCheck();
      return keys?.usable === true;
    },
    lookup: (apiKeySha256) => current()?.keys.lookupHash(apiKeySha256),
  };
}
