/**
 * The ids of the last `size` records that were handled (durably stored, or `onRecord` resolved),
 * oldest forgotten first. An id is added only once its record was handled: a record that failed
 * is never skipped as a duplicate when it comes again.
 */
export class DedupeWindow {
  private readonly ids = new Set<string>();

  constructor(private readonly size: number) {}

  has(id: string): boolean {
    return this.ids.has(id);
  }

  add(id: string): void {
    if (this.size === 0 || this.ids.has(id)) return;
    this.ids.add(id);
    if (this.ids.size > this.size) {
      this.ids.delete(this.ids.values().next().value as string);
    }
  }
}
