/** How many maps a `ShardedMap` spreads its entries over. */
const SHARDS = 256;

/** The value of a hex digit (any other character gives some number: still deterministic). */
const hexValue = (c: number) => (c <= 57 ? c - 48 : (c | 32) - 87);

/**
 * A map from key fingerprints (hex strings) to values, spread over 256 maps by the first two hex
 * digits. A single `Map` grows by rehashing every entry at once: 50 ms at 524,288 entries, 140 ms
 * at 1,048,576, in one step no time slice can split; here each map holds 1/256 of the keys, so
 * growing never holds the event loop for more than a fraction of a millisecond. Iteration goes
 * map by map (in insertion order within each).
 */
export class ShardedMap<V> {
  private readonly shards: Map<string, V>[] = Array.from({ length: SHARDS }, () => new Map());
  private count = 0;

  private shard(key: string): Map<string, V> {
    const i = ((hexValue(key.charCodeAt(0)) << 4) | hexValue(key.charCodeAt(1))) & (SHARDS - 1);
    return this.shards[i] as Map<string, V>;
  }

  get size(): number {
    return this.count;
  }

  get(key: string): V | undefined {
    return this.shard(key).get(key);
  }

  has(key: string): boolean {
    return this.shard(key).has(key);
  }

  set(key: string, value: V): this {
    const s = this.shard(key);
    const before = s.size;
    s.set(key, value);
    this.count += s.size - before;
    return this;
  }

  delete(key: string): boolean {
    const deleted = this.shard(key).delete(key);
    if (deleted) this.count--;
    return deleted;
  }

  *entries(): IterableIterator<[string, V]> {
    for (const s of this.shards) yield* s.entries();
  }

  [Symbol.iterator](): IterableIterator<[string, V]> {
    return this.entries();
  }
}
