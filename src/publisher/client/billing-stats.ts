import type { BillingErrorCode } from "../../billing-error.js";
import { type DecisionCounts, decisionCounts } from "../../keys/decision-counts.js";
import type { KeyUpdateRefusals } from "../../keys/key-update-refusal.js";
import type { Connection } from "../../mqtt/index.js";
import type { KeySync } from "../key-sync/key-sync.js";
import type { PendingLedger } from "../pipeline/pending-ledger.js";
import type { SendPipeline } from "../pipeline/send-pipeline.js";

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
  /**
   * Records held as undeliverable: each dropped the connection every time it was sent alone (a
   * broker that cannot take it), or is larger than the broker's announced maximum packet size
   * allows (queued before the first CONNACK told it, or stored by an earlier run). Still pending: `flush`/`close` report them; never retried in
   * this process (with a spool they stay in it). Logged at error level.
   */
  undeliverable: number;
  /**
   * Records the broker answered with PUBACK reason 0x10 (MQTT 5, "No matching subscribers": no
   * ingest subscribes to `<prefix>/report`, and the broker dropped them), counted each time (a
   * record held twice counts twice). They are not published: they stay queued (and spooled) and
   * are sent again, after 100 ms and then up to every 5 s, until a subscriber is there; not
   * counted in `failed`. MQTT 3.1.1 has no reason codes: a 3.1.1 broker drops them silently.
   */
  heldNoSubscriber: number;
  /** Records acknowledged by the broker. */
  published: number;
  /** Messages acknowledged by the broker: each carried a batch of one or more records. */
  publishedMessages: number;
  /**
   * Failed publish attempts, per record (refused by the broker, or cut off by a disconnect); all
   * retried. A batch refused and split in halves counts nothing until a record is refused alone.
   */
  failed: number;
  /** `reportUsage` calls refused: invalid input, `QUEUE_FULL`, `CLOSED`, `SPOOL`. */
  rejected: number;
  /** The same refusals by `BillingError` code (codes never seen are absent). */
  rejectedByCode: Partial<Record<BillingErrorCode, number>>;
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
  /**
   * Key updates applied (a snapshot sent again at the list's version, with the same keys and a
   * later `sentAt`, counts too: it made the list current again).
   */
  keyUpdates: number;
  /**
   * Key entries received (in applied updates) whose rules could not be enforced — a rate limit
   * of 0 or a window of 0, a malformed method or module name. Each such key is refused as blocked
   * ("invalid rules") while the rest of its update applies.
   */
  keysInvalidRules: number;
  /**
   * The key list's age in ms: since the last update that refreshed it was sent (or arrived, if
   * earlier; a delta after a gap does not refresh it), as `maxKeyListAgeMs` counts it. Undefined
   * before the first update.
   */
  keysAgeMs: number | undefined;
  /**
   * Key updates refused, by reason (the list stayed as it was): `missingSignature`,
   * `unknownSigner`, `badSignature`, `undecodable`, `invalid` (no version or `sentAt`, a key that
   * is not a fingerprint; one key's bad rules only block that key), `replayed` (an older version),
   * `duplicate` (the same version again: benign), `tooLarge` (`maxKeys`, `maxKeyUpdateBytes`),
   * `wrongAudience` (for another deployment than `keyUpdateAudience`, or for none). Two lists
   * signed under one version count as `invalid`. An update lost before it was checked (the
   * key-update worker stopped, or more than `maxKeyUpdateBytes` were waiting) counts nowhere: it
   * is logged and a snapshot is asked for.
   */
  keyUpdatesRefused: KeyUpdateRefusals;
  /**
   * Calls `requireApiKey()` decided in this process (every interceptor, every client), by
   * outcome: `allowed`, `exempt`, `missing`, `invalid`, `blocked`, `unavailable`, `expired`,
   * `method_denied`, `rate_limited`, `quota_exhausted`.
   */
  decisions: DecisionCounts;
}

/** The stats of a client, read from its parts (no copy of any counter is kept elsewhere). */
export function collectStats(
  connection: Connection,
  ledger: PendingLedger,
  pipeline: SendPipeline,
  keySync: KeySync,
  rejected: Partial<Record<BillingErrorCode, number>>,
): BillingStats {
  let rejectedTotal = 0;
  for (const n of Object.values(rejected)) rejectedTotal += n;
  const currentAt = keySync.gate.currentAt;
  return {
    connected: connection.client !== undefined,
    protocolVersion: connection.version,
    broker: connection.broker,
    queued: ledger.pending,
    queuedBytes: ledger.bytes,
    inFlight: pipeline.inFlightCount,
    retrying: pipeline.retrying,
    undeliverable: pipeline.undeliverable.length,
    heldNoSubscriber: pipeline.noSubscriber.held,
    published: pipeline.published,
    publishedMessages: pipeline.messages,
    failed: pipeline.failed,
    rejected: rejectedTotal,
    rejectedByCode: { ...rejected },
    reconnects: connection.reconnects,
    keysKnown: keySync.keys.size,
    keysLoaded: keySync.keys.loaded,
    keysStale: keySync.keys.loaded && !keySync.keys.usable,
    keysVersion: String(keySync.gate.version),
    keyUpdates: keySync.gate.applied,
    keysInvalidRules: keySync.keys.invalidRules,
    keysAgeMs: currentAt === undefined ? undefined : Math.max(0, Date.now() - currentAt),
    keyUpdatesRefused: { ...keySync.gate.refused },
    decisions: decisionCounts(),
  };
}
