import type { MqttClient } from "mqtt";
import type { UsageRecord } from "../../gen/billing/v1/usage_pb.js";
import type { BillingLogger } from "../common/logger.js";
import type { BatchObservers } from "./batch-observers.js";
import type { ResolvedConsumerOptions } from "./consumer-options.js";
import type { DedupeWindow } from "./dedupe-window.js";
import type { RejectedRecord } from "./usage-store.js";

/** One message taken from the broker, from its arrival until it is handled (then acknowledged). */
export interface Delivery {
  /** The connection that delivered it: only that one can acknowledge it. */
  readonly client: MqttClient;
  /** The packet id to acknowledge (QoS 1), or undefined (QoS 0). */
  readonly messageId: number | undefined;
  readonly records: readonly UsageRecord[];
  /** The digest of each record's bytes, in the order of `records`. */
  readonly digests: readonly string[];
  readonly rejected: readonly RejectedRecord[];
  /** The payload's size, for the pending-bytes bound. */
  readonly bytes: number;
  /** Its parts not handled yet: records and rejections (`onRecord`), or store writes. */
  left: number;
  done: boolean;
}

/** Counters of a consumer (see `UsageConsumerStats`). */
export interface Counters {
  received: number;
  records: number;
  handled: number;
  duplicates: number;
  idConflicts: number;
  rejectedDeliveries: number;
  rejectedStored: number;
  failed: number;
}

/** What a way of handling deliveries (a store, or `onRecord`) is given. */
export interface HandlingContext {
  o: ResolvedConsumerOptions;
  window: DedupeWindow;
  counters: Counters;
  log: BillingLogger;
  /** Told of each write that succeeded (its duration and lag). */
  batches: BatchObservers;
  /** Called once per delivery, when all of it was handled. */
  done(d: Delivery): void;
}

/** Hands deliveries to a store or to `onRecord`, bounded and retried. */
export interface Handling {
  add(d: Delivery): void;
  /** Resolves when nothing is being handled or waits to be. */
  idle(): Promise<void>;
  /** Stops starting and retrying work. */
  stop(): void;
}
