import * as crypto from "node:crypto";

// crypto.hash (Node 20.12+, 21.7+) hashes a small buffer in a third of createHash's time.
const oneShot = (
  crypto as { hash?: (algorithm: string, data: Uint8Array, encoding: "base64") => string }
).hash;

/** The SHA-256 of a record's bytes as they arrived (base64): what the dedupe window compares. */
export function recordDigest(bytes: Uint8Array): string {
  return oneShot !== undefined
    ? oneShot("sha256", bytes, "base64")
    : crypto.createHash("sha256").update(bytes).digest("base64");
}

/**
 * The ids of the last `size` records that were handled (durably stored, or `onRecord` resolved),
 * each with the digest of its bytes, oldest forgotten first. An id is added only once its record
 * was handled: a record that failed is never skipped as a duplicate when it comes again. A record
 * is skipped only when its bytes are the ones handled under its id: one with other bytes under a
 * known id goes on (to the store, which compares the content; with `onRecord`, to `onRejected`).
 */
export class DedupeWindow {
  private readonly ids = new Map<string, string>();

  constructor(private readonly size: number) {}

  /** The digest of the record handled under `id`, or undefined. */
  digest(id: string): string | undefined {
    return this.ids.get(id);
  }

  /** Remembers `id` as handled with `digest` (the first one handled under an id is kept). */
  add(id: string, digest: string): void {
    if (this.size === 0 || this.ids.has(id)) return;
    this.ids.set(id, digest);
    if (this.ids.size > this.size) {
      this.ids.delete(this.ids.keys().next().value as string);
    }
  }
}
