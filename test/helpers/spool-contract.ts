import { expect, it } from "vitest";
import type { RecordSpool, SpooledRecord } from "../../src/index.js";

const rec = (seq: number): SpooledRecord => ({
  seq,
  id: `id-${seq}`,
  bytes: new Uint8Array([seq & 0xff, 1, 2, 3]),
});

/**
 * The contract every RecordSpool must pass (like mqtt.js's shared Store suite). `make(name)`
 * opens a spool on storage named `name`; opening the same name again must see what was stored.
 */
export function spoolContract(make: (name: string) => RecordSpool) {
  it("stores, loads in seq order, forgets acknowledged records", () => {
    const s = make("basic");
    expect(s.load()).toEqual([]);
    s.append([rec(3), rec(1)]);
    s.append([rec(2)]);
    expect(s.count()).toBe(3);
    s.remove([1, 99]);
    const loaded = s.load();
    expect(loaded.map((r) => r.seq)).toEqual([2, 3]);
    expect(loaded.map((r) => r.id)).toEqual(["id-2", "id-3"]);
    expect([...(loaded[0]?.bytes ?? [])]).toEqual([2, 1, 2, 3]);
    s.close();
    s.close(); // idempotent
  });

  it("keeps records across close and reopen", () => {
    const a = make("reopen");
    a.append([rec(10), rec(11)]);
    a.remove([10]);
    a.close();
    const b = make("reopen");
    expect(b.load().map((r) => r.seq)).toEqual([11]);
    b.close();
  });

  it("appends a large batch at once", () => {
    const s = make("large");
    s.append(Array.from({ length: 5000 }, (_, i) => rec(i)));
    expect(s.count()).toBe(5000);
    s.remove(Array.from({ length: 5000 }, (_, i) => i));
    expect(s.count()).toBe(0);
    s.close();
  });
}

/** A spool kept in memory: not durable across processes; the contract's reference model. */
export class MemorySpool implements RecordSpool {
  private static stores = new Map<string, Map<number, SpooledRecord>>();
  private rows: Map<number, SpooledRecord>;
  constructor(name: string) {
    this.rows = MemorySpool.stores.get(name) ?? new Map();
    MemorySpool.stores.set(name, this.rows);
  }
  load() {
    return [...this.rows.values()].sort((a, b) => a.seq - b.seq);
  }
  append(records: readonly SpooledRecord[]) {
    for (const r of records) this.rows.set(r.seq, r);
  }
  remove(seqs: readonly number[]) {
    for (const s of seqs) this.rows.delete(s);
  }
  count() {
    return this.rows.size;
  }
  close() {}
}
