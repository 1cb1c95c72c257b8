import { framedSize } from "../../protocol/usage-batch.js";
import type { PendingRecord } from "../pending-record.js";

/** Messages acknowledged in a row after which the cap is doubled (and at last lifted). */
const GROW_AFTER_MESSAGES = 256;

/**
 * A bound on batch bytes learnt from lost connections: a broker may drop the connection for a
 * message over a limit it does not announce (mosquitto's message_size_limit, MQTT 3.1.1). A
 * connection lost with a batch of several records in flight halves the bound (below the largest
 * such batch), so batches narrow down to what the broker takes in O(log n) drops, in order,
 * instead of every record in flight turning suspect and going alone. After
 * `GROW_AFTER_MESSAGES` acknowledged messages in a row it doubles again, so a drop that had
 * nothing to do with size costs batch size for a while only.
 */
export class DropCap {
  /** The most bytes of one batch for now (`Infinity`: no bound learnt). */
  bytes = Number.POSITIVE_INFINITY;
  private acked = 0;

  /** A connection was lost with these batches of several records in flight. */
  cutOff(batch: readonly PendingRecord[]): void {
    let size = 0;
    for (const r of batch) size += framedSize(r.bytes.length);
    this.bytes = Math.min(this.bytes, Math.floor(size / 2));
    this.acked = 0;
  }

  /** A message was acknowledged; `max` is the bound without the cap. */
  acknowledged(max: number): void {
    if (this.bytes === Number.POSITIVE_INFINITY || ++this.acked < GROW_AFTER_MESSAGES) return;
    this.acked = 0;
    this.bytes = this.bytes * 2 >= max ? Number.POSITIVE_INFINITY : this.bytes * 2;
  }
}
