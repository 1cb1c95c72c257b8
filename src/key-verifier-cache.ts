import type { KeyState } from "../gen/billing/v1/usage_pb.js";

/** What a custom verifier says about a valid key. */
export interface VerifiedKey {
  /** The application that owns the key. */
  appId: string;
  /** ACTIVE (default) or BLOCKED. */
  state?: KeyState;
  /** Why the key is blocked (shown to the caller). */
  reason?: string;
}

interface Entry {
  value: VerifiedKey | null;
  expiresAt: number;
}

/**
 * Caches a custom verifier's answers by key fingerprint: hits for `ttlMs`, misses for
 * `negativeTtlMs`, at most `maxEntries` (the oldest entry goes first). Concurrent lookups of one
 * key share a single verifier call (single flight). A verifier that throws or misses its deadline
 * rejects the lookup, and nothing is cached.
 */
export class KeyVerifierCache {
  private entries = new Map<string, Entry>();
  private inflight = new Map<string, Promise<VerifiedKey | null>>();

  constructor(
    private readonly verify: (apiKey: string) => Promise<VerifiedKey | null>,
    private readonly o: {
      ttlMs: number;
      negativeTtlMs: number;
      maxEntries: number;
      timeoutMs: number;
    },
  ) {}

  lookup(apiKey: string, hash: string): Promise<VerifiedKey | null> {
    const hit = this.entries.get(hash);
    if (hit !== undefined && hit.expiresAt > Date.now()) return Promise.resolve(hit.value);
    let pending = this.inflight.get(hash);
    if (pending === undefined) {
      pending = this.call(apiKey).then(
        (value) => {
          this.inflight.delete(hash);
          this.store(hash, value);
          return value;
        },
        (err: unknown) => {
          this.inflight.delete(hash);
          throw err;
        },
      );
      this.inflight.set(hash, pending);
    }
    return pending;
  }

  private call(apiKey: string): Promise<VerifiedKey | null> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("verifier timed out")), this.o.timeoutMs);
      Promise.resolve()
        .then(() => this.verify(apiKey))
        .then(
          (v) => {
            clearTimeout(timer);
            resolve(v);
          },
          (e: unknown) => {
            clearTimeout(timer);
            reject(e);
          },
        );
    });
  }

  private store(hash: string, value: VerifiedKey | null): void {
    const ttl = value === null ? this.o.negativeTtlMs : this.o.ttlMs;
    if (ttl <= 0) return;
    this.entries.delete(hash);
    if (this.entries.size >= this.o.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
    this.entries.set(hash, { value, expiresAt: Date.now() + ttl });
  }
}
