import type { KeyObject } from "node:crypto";
import type { LogLevel } from "../common/logger.js";

/** How the gate decides (from the client's options). */
export interface KeyUpdateGateOptions {
  /** The public keys that may sign updates, by signer name (`keyUpdatePublicKeys`). */
  publicKeys: ReadonlyMap<string, KeyObject>;
  /** Also accept unsigned updates; signed ones are still verified. */
  acceptUnsigned: boolean;
  /** The most keys the list may hold (`maxKeys`). */
  maxKeys: number;
  /** The largest payload accepted (`maxKeyUpdateBytes`); also the most bytes left waiting. */
  maxBytes: number;
  /** The staleness bound (`maxKeyListAgeMs`); undefined: none. */
  maxAgeMs: number | undefined;
  /** The audience an update must name (`keyUpdateAudience`). */
  audience: string;
  /** Also accept an update that names no audience (`acceptUnboundKeyUpdates`). */
  acceptUnbound: boolean;
  /**
   * Payloads up to this many bytes are checked on the event loop when none waits before them
   * (their cost is bounded by their size: for 64 KB shaped to cost most, measured at about 2 ms
   * median and 25 ms at worst); larger ones, and any that waited, in the key-update worker.
   * Default: 65,536.
   */
  inlineBytes?: number;
  /** Where the gate says that the worker could not start. Default: nowhere. */
  log?: (level: LogLevel, message: string) => void;
  /** The worker's module (tests point it elsewhere). Default: the SDK's key-update worker. */
  workerUrl?: URL;
}
