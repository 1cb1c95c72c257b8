import { BillingError } from "../../billing-error.js";
import { positiveInt } from "../../common/option-checks.js";

/** How much may wait for the broker: the queue's bounds (`PendingLedger`, `reportUsage`). */
export interface QueueOptions {
  /**
   * How many records may wait for the broker's acknowledgement (queued, in flight or waiting to
   * retry). Past it `reportUsage` rejects with `QUEUE_FULL`, counted in `rejected`. Default: `100_000`.
   */
  maxQueued?: number;
  /**
   * How many encoded bytes those waiting records may hold in memory together: a broker outage
   * then costs at most this much memory. Past it `reportUsage` rejects with `QUEUE_FULL`,
   * counted in `rejected`. Default: `67_108_864` (64 MiB).
   */
  maxQueuedBytes?: number;
  /** The largest encoded `UsageRecord` accepted (bounds `metadata`). Default: `32_768` bytes. */
  maxRecordBytes?: number;
}

/** How records go out: the send pipeline's window and batches (`SendPipeline`). */
export interface BatchOptions {
  /** How many publishes may await their PUBACK at once (also capped by the broker's receive maximum). Default: `256`. */
  inFlightWindow?: number;
  /**
   * The most records one MQTT message carries (a `UsageBatch`): the records ready when the window
   * has room go together, up to this many. `1` sends one record per message. Default: `500`.
   */
  maxBatchRecords?: number;
  /**
   * The most bytes of one message's `UsageBatch`, kept within the maximum packet size the broker
   * announces (MQTT 5). At least `maxRecordBytes + 6`. Default: `262_144` (256 KiB).
   */
  maxBatchBytes?: number;
  /**
   * How long a batch that is not full may wait for more records before it is sent: fewer, fuller
   * messages for up to this much latency. While `flush()` or `close()` waits, the records it waits
   * for go at once (also ones put back by a reconnect, or stored by the spool after the call), and
   * a record sent once never lingers again: so `lingerMs` may exceed `closeTimeoutMs`. Default: `0`
   * (records go as soon as the window has room; those of one event-loop turn go together).
   */
  lingerMs?: number;
}

/** The queue's and the pipeline's options with every default filled in. */
export type ResolvedPipelineOptions = Required<QueueOptions & BatchOptions>;

/** Fills the defaults of the queue's and the pipeline's options and checks them. */
export function resolvePipelineOptions(o: QueueOptions & BatchOptions): ResolvedPipelineOptions {
  const r: ResolvedPipelineOptions = {
    maxQueued: o.maxQueued ?? 100_000,
    maxQueuedBytes: o.maxQueuedBytes ?? 64 * 1024 * 1024,
    maxRecordBytes: o.maxRecordBytes ?? 32_768,
    inFlightWindow: o.inFlightWindow ?? 256,
    maxBatchRecords: o.maxBatchRecords ?? 500,
    maxBatchBytes: o.maxBatchBytes ?? 256 * 1024,
    lingerMs: o.lingerMs ?? 0,
  };
  positiveInt("maxQueued", r.maxQueued, false, Number.MAX_SAFE_INTEGER);
  positiveInt("maxQueuedBytes", r.maxQueuedBytes, false, Number.MAX_SAFE_INTEGER);
  positiveInt("inFlightWindow", r.inFlightWindow, false, 65535);
  positiveInt("maxRecordBytes", r.maxRecordBytes, false, 256 * 1024 * 1024);
  positiveInt("maxBatchRecords", r.maxBatchRecords, false, 1_000_000);
  positiveInt("maxBatchBytes", r.maxBatchBytes, false, 268_435_455);
  if (r.maxBatchBytes < r.maxRecordBytes + 6) {
    throw BillingError.invalid(
      "maxBatchBytes",
      `must hold one record of maxRecordBytes (${r.maxRecordBytes}) and its 6 bytes of framing`,
    );
  }
  positiveInt("lingerMs", r.lingerMs, true, 60_000);
  return r;
}
