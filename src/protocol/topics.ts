/** The MQTT topics billing-sdk uses, under one prefix (default `billing`). */
export interface BillingTopics {
  /** `UsageRecord`s, SDK → backend. */
  readonly report: string;
  /** `KeyUpdate`s, backend → SDK. */
  readonly keysUpdate: string;
  /** `KeyListRequest`s, SDK → backend. */
  readonly keysRequest: string;
  /** `Heartbeat`s (and the will), SDK → backend. */
  readonly heartbeat: string;
}

/** The topic names under `prefix`: the same names the Python SDK used. */
export function billingTopics(prefix = "billing"): BillingTopics {
  return {
    report: `${prefix}/report`,
    keysUpdate: `${prefix}/keys/update`,
    keysRequest: `${prefix}/keys/request`,
    heartbeat: `${prefix}/heartbeat`,
  };
}
