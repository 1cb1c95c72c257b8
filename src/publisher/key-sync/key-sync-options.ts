import type { KeyObject } from "node:crypto";
import { BillingError } from "../../billing-error.js";
import { positiveInt } from "../../common/option-checks.js";
import { nameProblem, shownText } from "../../common/text.js";
import { publicKeysOf } from "../../keys/signed-key-update.js";

/** Which key updates the client takes, and how large and how old a key list may be (`KeySync`). */
export interface KeySyncOptions {
  /**
   * The Ed25519 public keys that may sign key updates, by signer name: PEM text
   * (`readFileSync("key-update-public.pem", "utf8")`) or a `KeyObject`. Several names allow key
   * rotation. A key update must be signed by one of them (see `signKeyUpdate`): with none
   * configured, the key list never loads and `requireApiKey()` answers `Unavailable` (said once,
   * at the first call it decides). Keys anyone can sign for (small-order points, non-canonical
   * encodings) are refused. Default: none.
   */
  keyUpdatePublicKeys?: Record<string, string | KeyObject> | undefined;
  /**
   * Also accept key updates that carry no signature: anyone who may publish on
   * `<prefix>/keys/update` then decides which API keys pass. Signed updates are still verified.
   * Logs a warning at construction. For tests and demos only. Default: `false`.
   */
  insecureAcceptUnsignedKeyUpdates?: boolean;
  /**
   * The deployment this client takes key updates for: an update is applied only when its signed
   * `audience` is this (counted as `wrongAudience` otherwise), so one signing key can serve
   * staging and production without an update for one applying in the other. 1..128 characters.
   * Default: `topicPrefix` (a warning is logged when key updates are verified and it is left
   * unset, as deployments often share the prefix; a prefix that is no valid audience is then
   * refused, `INVALID_ARGUMENT` naming `keyUpdateAudience`).
   */
  keyUpdateAudience?: string | undefined;
  /**
   * Also accept key updates that name no audience (from a backend that does not set it yet).
   * Updates that name another audience are still refused. Default: `false`.
   */
  acceptUnboundKeyUpdates?: boolean;
  /**
   * The most keys the key list may hold: a snapshot with more, or a delta that would grow the list
   * past it, is refused (counted as `tooLarge`) and the list stays as it was. Default: `1_000_000`.
   */
  maxKeys?: number;
  /**
   * The largest key update accepted, in bytes. With MQTT 5 it is sent to the broker as the
   * connection's maximum packet size (plus room for the topic and headers), so the broker never
   * delivers a larger message to this client; with MQTT 3.1.1 a larger one is refused when it
   * arrives (counted as `tooLarge`). Default: `maxKeys * 128` (128,000,000 with the default
   * `maxKeys`: room for a full snapshot), at most 268,000,000.
   */
  maxKeyUpdateBytes?: number;
  /**
   * The staleness bound: the interceptor decides on the key list only while its last snapshot (or
   * contiguous delta) was sent at most this long ago, by its signed `sentAt` (never later than its
   * arrival); after that it answers `Unavailable` until a fresh update arrives. The backend must
   * re-send a snapshot well within it (e.g. every third of it). Default: none (no bound).
   */
  maxKeyListAgeMs?: number | undefined;
}

/** The key sync's options with every default filled in (the public keys read). */
export type ResolvedKeySyncOptions = Required<
  Omit<KeySyncOptions, "keyUpdatePublicKeys" | "keyUpdateAudience" | "maxKeyListAgeMs">
> & {
  keyUpdatePublicKeys: Map<string, KeyObject>;
  keyUpdateAudience: string | undefined;
  maxKeyListAgeMs: number | undefined;
};

/** The largest `maxKeyUpdateBytes` (an MQTT packet is at most 268,435,455 bytes plus headers). */
const MAX_KEY_UPDATE_BYTES = 268_000_000;

/**
 * Fills the defaults of the key sync's options and checks them; `topicPrefix` (the connection's)
 * is the audience when `keyUpdateAudience` is not set, and must then be a valid one.
 */
export function resolveKeySyncOptions(
  o: KeySyncOptions,
  topicPrefix: string,
): ResolvedKeySyncOptions {
  const maxKeys = o.maxKeys ?? 1_000_000;
  const r: ResolvedKeySyncOptions = {
    keyUpdatePublicKeys: publicKeysOf(o.keyUpdatePublicKeys),
    insecureAcceptUnsignedKeyUpdates: o.insecureAcceptUnsignedKeyUpdates ?? false,
    keyUpdateAudience: o.keyUpdateAudience,
    acceptUnboundKeyUpdates: o.acceptUnboundKeyUpdates ?? false,
    maxKeys,
    maxKeyUpdateBytes:
      o.maxKeyUpdateBytes ??
      (Number.isSafeInteger(maxKeys) ? Math.min(maxKeys * 128, MAX_KEY_UPDATE_BYTES) : 0),
    maxKeyListAgeMs: o.maxKeyListAgeMs,
  };
  positiveInt("maxKeys", r.maxKeys, false, Number.MAX_SAFE_INTEGER);
  positiveInt("maxKeyUpdateBytes", r.maxKeyUpdateBytes, false, MAX_KEY_UPDATE_BYTES);
  if (r.maxKeyListAgeMs !== undefined) positiveInt("maxKeyListAgeMs", r.maxKeyListAgeMs);
  if (r.keyUpdateAudience !== undefined) {
    const problem = audienceProblem(r.keyUpdateAudience);
    if (problem !== undefined) throw BillingError.invalid("keyUpdateAudience", problem);
  } else if (r.keyUpdatePublicKeys.size > 0 || r.insecureAcceptUnsignedKeyUpdates === true) {
    // Key updates are checked, for the topic prefix: it must pass as an audience too.
    const problem = audienceProblem(topicPrefix);
    if (problem !== undefined) {
      throw BillingError.invalid(
        "keyUpdateAudience",
        `the topic prefix ${JSON.stringify(shownText(topicPrefix, 64))} is not a valid audience (it ${problem}): set keyUpdateAudience`,
      );
    }
  }
  flag("insecureAcceptUnsignedKeyUpdates", r.insecureAcceptUnsignedKeyUpdates);
  flag("acceptUnboundKeyUpdates", r.acceptUnboundKeyUpdates);
  return r;
}

/**
 * The MQTT 5 maximum packet size the client announces: a key update of `maxKeyUpdateBytes` plus
 * room for the fixed header, topic and properties.
 */
export function maximumPacketSize(o: { maxKeyUpdateBytes: number }): number {
  return o.maxKeyUpdateBytes + 4096;
}

/** Why `value` is not an audience (a name of 1..128 characters), or undefined when it is. */
function audienceProblem(value: unknown): string | undefined {
  return typeof value !== "string" || value === "" || value.length > 128
    ? 'must be a name of 1..128 characters (the deployment, e.g. "prod")'
    : nameProblem(value);
}

/** `value`, checked to be a boolean. */
function flag(name: string, value: unknown): void {
  if (typeof value !== "boolean") {
    throw BillingError.invalid(name, `must be true or false, not ${String(value)}`);
  }
}
