import type { UsageRecord } from "../../../gen/billing/v1/usage_pb.js";
import { BillingError } from "../../billing-error.js";
import type { UsageInit } from "../../protocol/usage-input.js";
import { getBillingClient } from "./billing-client.js";

/**
 * Reports usage through the process-wide `BillingClient`: the same as
 * `getBillingClient().reportUsage(init)`. Rejects with `NOT_INITIALIZED` when no client is open.
 */
export function reportUsage(init: UsageInit | UsageRecord): Promise<string> {
  const client = getBillingClient();
  if (client === undefined) {
    return Promise.reject(
      new BillingError(
        "NOT_INITIALIZED",
        "no BillingClient: create one with new BillingClient(options) before reporting usage",
      ),
    );
  }
  return client.reportUsage(init);
}
