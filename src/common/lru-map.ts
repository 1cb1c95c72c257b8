/** A bounded map whose hits move to the back, so the least recently used entry goes first. */
export class LruMap<V> {
  private readonly m = new Map<string, V>();
  constructor(private readonly max: number) {}
  /** The entry, marked as just used. */
  get(k: string): V | undefined {
    const v = this.m.get(k);
    if (v !== undefined) {
      this.m.delete(k);
      this.m.set(k, v);
    }
    return v;
  }
  /** The entry without marking it. */
  peek(k: string): V | undefined {
    return this.m.get(k);
  }
  set(k: string, v: V): void {
    this.m.delete(k);
    if (this.m.size >= this.max) {
      const oldest = this.m.keys().next().value;
      if (oldest !== undefined) this.m.delete(oldest);
    }
    this.m.set(k, v);
  }
  delete(k: string): void {
    this.m.delete(k);
  }
}
