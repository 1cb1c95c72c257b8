/**
 * A binary min-heap: `push` and `pop` in O(log n), `peek` in O(1). Used for the records put back
 * in order (by seq) and for the retry schedule (by due time), which can hold hundreds of
 * thousands of records while a broker refuses them: nothing here is O(n) per operation, and
 * nothing spreads an array into arguments.
 */
export class MinHeap<T> {
  private readonly items: T[] = [];

  constructor(private readonly less: (a: T, b: T) => boolean) {}

  get size(): number {
    return this.items.length;
  }

  peek(): T | undefined {
    return this.items[0];
  }

  push(item: T): void {
    const a = this.items;
    a.push(item);
    let i = a.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(a[i] as T, a[parent] as T)) break;
      [a[i], a[parent]] = [a[parent] as T, a[i] as T];
      i = parent;
    }
  }

  pop(): T | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length === 0 || last === undefined) return top;
    a[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < a.length && this.less(a[l] as T, a[m] as T)) m = l;
      if (r < a.length && this.less(a[r] as T, a[m] as T)) m = r;
      if (m === i) break;
      [a[i], a[m]] = [a[m] as T, a[i] as T];
      i = m;
    }
    return top;
  }

  /** Every item, in no particular order (for shutdown accounting). */
  values(): readonly T[] {
    return this.items;
  }
}
