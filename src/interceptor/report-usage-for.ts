import { create } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import { UsageRecordSchema } from "../../gen/billing/v1/usage_pb.js";
import { BillingError } from "../billing-error.js";
import type { UsageInit } from "../protocol/usage-input.js";
import { type BillingClient, getBillingClient } from "../publisher/index.js";
import { billingCaller } from "./billing-caller.js";

/** What a handler passes to `reportUsageFor`: a `UsageInit` without the key. */
export interface CallerUsage extends Omit<UsageInit, "apiKey"> {}

/**
 * Reports usage for the caller `requireApiKey()` verified, without reading headers again.
 * Rejects with `INVALID_ARGUMENT` when the call has no verified caller (no interceptor, or an
 * exempt method), and like `reportUsage` otherwise. Default client: the process-wide one.
 */
export function reportUsageFor(
  ctx: Pick<HandlerContext, "values">,
  usage: CallerUsage,
  client: BillingClient | undefined = getBillingClient(),
): Promise<string> {
  const caller = ctx.values.get(billingCaller);
  if (caller === undefined) {
    return Promise.reject(
      BillingError.invalid("ctx", "no verified caller: is requireApiKey() on this route?"),
    );
  }
  if (client === undefined) {
    return Promise.reject(new BillingError("NOT_INITIALIZED", "no BillingClient"));
  }
  if (typeof usage !== "object" || usage === null) {
    return Promise.reject(BillingError.invalid("usage report", "must be an object"));
  }
  // Validation (module, model, usage, metadata) happens in reportUsage, as for any record.
  const record = create(UsageRecordSchema, {
    apiKeySha256: caller.apiKeySha256,
    appId: caller.appId,
    module: usage.module,
    model: usage.model,
    usage: usage.usage as bigint, // checked (and a number converted) by reportUsage
    metadata: usage.metadata,
  });
  return client.reportUsage(record);
}
