import { KeyState } from "../../gen/billing/v1/usage_pb.js";
import { withDeadline } from "../common/deadline.js";
import type { KeyInfo } from "../keys/key-list.js";
import type { KeySource } from "./key-source.js";

/** What a custom verifier says about a valid key. */
export interface VerifiedKey {
  /** The application that owns the key. */
  appId: string;
  /** ACTIVE (default) or BLOCKED. */
  state?: KeyState;
  /** Why the key is blocked (shown to the caller). */
  reason?: string;
}

/** How `verifyKeySource` caches and bounds the verifier. */
export interface VerifyCacheOptions {
  ttlMs: number;
  negativeTtlMs: number;
  maxEntries: number;
  timeoutMs: number;
}

interface Entry {
  value: KeyInfo | undefined;
  expiresAt: number;
}

/**
 * A custom verifier as a key source. Answers are cached by key fingerprint: hits for `ttlMs`,
 * misses for `negativeTtlMs`, at most `maxEntries` (the oldest entry goes first). Concurrent
 * lookups of one key share a single verifier call (single flight). A verifier that throws or
 * misses its deadline rejects the lookup, and nothing is cached.
 */
export function verifyKeySource(
  verify: (apiKey: string) => Promise<VerifiedKey | null>,
  o: VerifyCacheOptions,
): KeySource {
  const entries = new Map<string, Entry>();
  const inflight = new Map<string, Promise<KeyInfo | undefined>>();

  const store = (hash: string, value: KeyInfo | undefined) => {
    const ttl = value === undefined ? o.negativeTtlMs : o.ttlMs;
    if (ttl <= 0) return;
    entries.delete(hash);
    if (entries.size >= o.maxEntries) {
      const oldest = entries.keys().next().value;
      if (oldest !== undefined) entries.delete(oldest);
    }
    entries.set(hash, { value, expiresAt: Date.now() + ttl });
  };

  const call = async (apiKey: string): Promise<KeyInfo | undefined> => {
    const found = await withDeadline(
      Promise.resolve().then(() => verify(apiKey)),
      o.timeoutMs,
      "the API key verifier",
    );
    if (found === null || found === undefined) return undefined;
    return {
      appId: found.appId,
      state: found.state ?? KeyState.ACTIVE,
      reason: found.reason ?? "",
    };
  };

  return {
    loaded: () => true,
    lookup(hash, apiKey) {
      const hit = entries.get(hash);
      if (hit !== undefined && hit.expiresAt > Date.now()) return hit.value;
      let pending = inflight.get(hash);
      if (pending === undefined) {
        pending = call(apiKey).then(
          (value) => {
            inflight.delete(hash);
            store(hash, value);
            return value;
          },
          (err: unknown) => {
            inflight.delete(hash);
            throw err;
          },
        );
        inflight.set(hash, pending);
      }
      return pending;
    },
  };
}
