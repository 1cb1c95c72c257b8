import { processSlot } from "../common/process-slots.js";
import type { KeyRules } from "./key-rules.js";
import { debitUsage } from "./rule-check.js";

/** Something that holds key rules by fingerprint: the pushed key list, a verifier's cache. */
export interface RulesHolder {
  rulesOf(apiKeySha256: string): KeyRules | undefined;
}

/** Verifier caches, held weakly: an interceptor that is dropped takes its cache with it. */
const verifierCaches = processSlot("verifierCaches", () => new Set<WeakRef<RulesHolder>>());

/** Lets the usage every `BillingClient` of this process reports debit the rules `holder` keeps. */
export function debitedByReports(holder: RulesHolder): void {
  verifierCaches.add(new WeakRef(holder));
}

/**
 * The hook from `reportUsage` to the key rules: once a record is accepted, its usage is taken from
 * the quotas and usage rate limits of its key (by fingerprint) for its module, in the client's
 * key list and in every verifier cache that knows the key.
 */
export function debitReported(
  own: RulesHolder,
  apiKeySha256: string,
  module: string,
  usage: bigint,
): void {
  const amount = Number(usage);
  const rules = own.rulesOf(apiKeySha256);
  if (rules !== undefined) debitUsage(rules, module, amount);
  for (const ref of verifierCaches) {
    const holder = ref.deref();
    if (holder === undefined) {
      verifierCaches.delete(ref);
      continue;
    }
    const r = holder.rulesOf(apiKeySha256);
    if (r !== undefined) debitUsage(r, module, amount);
  }
}
