import type { KeyUpdateRefusals } from "../keys/key-update-gate.js";

/** Counters and state of a `BillingClient`, from `client.stats()`. */
export interface BillingStats {
  /** Whether the MQTT connection is up now. */
  connected: boolean;
  /** The MQTT version in use (5, or 4 after falling back to 3.1.1). */
  protocolVersion: 4 | 5;
  /** The broker of the current (or next) connection, `host:port`. */
  broker: string;
  /** Records accepted and not yet acknowledged (being stored, waiting, in flight or waiting to retry). */
  queued: number;
  /** The encoded bytes of those records (bounded by `maxQueuedBytes`). */
  queuedBytes: number;
  /** Records published and waiting for their PUBACK. */
  inFlight: number;
  /** Records waiting out a delay after the broker refused them (PUBACK reason code ≥ 0x80). */
  retrying: number;
  /** Records acknowledged by the broker. */
  published: number;
  /** Failed publish attempts (refused by the broker, or cut off by a disconnect); all retried. */
  failed: number;
  /** `reportUsage` calls refused: invalid input, `QUEUE_FULL`, `CLOSED`, `SPOOL`. */
  rejected: number;
  /** Connections made after the first one. */
  reconnects: number;
  /** Keys in the key list. */
  keysKnown: number;
  /** Whether a key-list snapshot has arrived. */
  keysLoaded: boolean;
  /** Whether the key list is older than `maxKeyListAgeMs` (the interceptor answers Unavailable). */
  keysStale: boolean;
  /** The version of the key list (of its last snapshot or delta after one), decimal; "0" before. */
  keysVersion: string;
  /** Key updates applied. */
  keyUpdates: number;
  /**
   * Key updates refused, by reason (the list stayed as it was): `missingSignature`,
   * `unknownSigner`, `badSignature`, `undecodable`, `invalid`, `replayed` (an older version),
   * `duplicate` (the same version again: benign), `tooLarge` (`maxKeys`, `maxKeyUpdateBytes`).
   */
  keyUpdatesRefused: KeyUpdateRefusals;
}
