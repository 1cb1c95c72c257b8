import { createContextKey } from "@connectrpc/connect";
import type { KeyState } from "../../gen/billing/v1/usage_pb.js";

/** The verified caller of an RPC, as `requireApiKey()` puts it in the context values. */
export interface BillingCaller {
  /** Lowercase hex SHA-256 of the caller's API key (the raw key is not kept). */
  readonly apiKeySha256: string;
  /** The application that owns the key ("" when the verifier did not say). */
  readonly appId: string;
  /** The key's state: always `KeyState.ACTIVE` for a call that reached the handler. */
  readonly state: KeyState;
}

/** Context key of the verified caller: `ctx.values.get(billingCaller)` in a handler. */
export const billingCaller = createContextKey<BillingCaller | undefined>(undefined, {
  description: "billing-sdk verified caller",
});
