import type { RecordSpool, SpooledRecord } from "../../src/index.js";

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
