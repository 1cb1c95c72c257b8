// The publisher as the folders of its own layer (interceptor/) see it: the client and the
// process-wide instance.

export { BillingClient, getBillingClient } from "./client/billing-client.js";
