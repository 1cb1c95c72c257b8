import { TOPIC_REFUSALS } from "./publish-link.js";

/**
 * PUBACK reason code 0x10, "No matching subscribers" (MQTT 5): the broker took the message and
 * dropped it, as nobody subscribes to its topic. mqtt.js reports it as a success.
 */
export const NO_MATCHING_SUBSCRIBERS = 0x10;

/**
 * What became of one batch sent, read from its `PublishLink` callback. Every batch sent has
 * exactly one outcome, also one cut off by a lost connection (`detach`).
 * - `delivered`: a PUBACK without error: the broker took it, and had a subscriber for it.
 * - `no-subscriber`: PUBACK 0x10: the broker took it and dropped it (nobody subscribes).
 * - `refused`: a PUBACK reason code ≥ 0x80, or another error while the connection is still up
 *   (e.g. larger than the broker's maximum packet size): a problem of this batch. `topic` when
 *   the code is about the topic (every record would be refused alike: no use splitting it).
 * - `cut-off`: the connection went down before the answer came.
 */
export type SendOutcome =
  | { readonly t: "delivered" }
  | { readonly t: "no-subscriber" }
  | { readonly t: "refused"; readonly why: string; readonly topic: boolean }
  | { readonly t: "cut-off" };

const DELIVERED: SendOutcome = { t: "delivered" };
const NO_SUBSCRIBER: SendOutcome = { t: "no-subscriber" };
const CUT_OFF: SendOutcome = { t: "cut-off" };

/** The outcome of a batch whose callback got `err`, while the connection `isUp` (or not). */
export function sendOutcome(err: Error | null | undefined, isUp: boolean): SendOutcome {
  const reason = (err as { code?: unknown } | null | undefined)?.code;
  if (reason === NO_MATCHING_SUBSCRIBERS) return NO_SUBSCRIBER;
  if (!err) return DELIVERED;
  if (typeof reason === "number") {
    const why = `PUBACK reason code ${reason} (${err.message})`;
    return { t: "refused", why, topic: TOPIC_REFUSALS.has(reason) };
  }
  return isUp ? { t: "refused", why: err.message, topic: false } : CUT_OFF;
}
