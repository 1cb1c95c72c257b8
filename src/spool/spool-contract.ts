import { deepStrictEqual, strictEqual } from "node:assert";
import type { RecordSpool, SpooledRecord } from "../publisher/record-spool.js";

/** One case of the spool contract: a name, and a check that throws when the spool fails it. */
export interface SpoolContractCase {
  /** What the case checks, e.g. as a test's name. */
  readonly name: string;
  /** Runs the check on the spool the cases were made for; throws when the spool fails it. */
  readonly run: () => void;
}

const rec = (seq: number): SpooledRecord => ({
  seq,
  id: `id-${seq}`,
  bytes: new Uint8Array([seq & 0xff, 1, 2, 3]),
});

type Make = (name: string) => RecordSpool;

function storesLoadsForgets(make: Make): void {
  const s = make("basic");
  deepStrictEqual(s.load(), []);
  s.append([rec(3), rec(1)]);
  s.append([rec(2)]);
  strictEqual(s.count(), 3);
  s.remove([1, 99]);
  const loaded = s.load();
  deepStrictEqual(
    loaded.map((r) => r.seq),
    [2, 3],
  );
  deepStrictEqual(
    loaded.map((r) => r.id),
    ["id-2", "id-3"],
  );
  deepStrictEqual([...(loaded[0]?.bytes ?? [])], [2, 1, 2, 3]);
  s.close();
  s.close(); // idempotent
}

function keepsAcrossReopen(make: Make): void {
  const a = make("reopen");
  a.append([rec(10), rec(11)]);
  a.remove([10]);
  a.close();
  const b = make("reopen");
  deepStrictEqual(
    b.load().map((r) => r.seq),
    [11],
  );
  b.close();
}

function largeBatch(make: Make): void {
  const s = make("large");
  s.append(Array.from({ length: 5000 }, (_, i) => rec(i)));
  strictEqual(s.count(), 5000);
  s.remove(Array.from({ length: 5000 }, (_, i) => i));
  strictEqual(s.count(), 0);
  s.close();
}

function removesExactly(make: Make): void {
  const s = make("runs");
  s.append(Array.from({ length: 20 }, (_, i) => rec(i)));
  s.remove([12, 5, 6, 7, 3, 13, 14, 19, 5]);
  deepStrictEqual(
    s.load().map((r) => r.seq),
    [0, 1, 2, 4, 8, 9, 10, 11, 15, 16, 17, 18],
  );
  s.close();
}

function keepsBytesExactly(make: Make): void {
  const s = make("bytes");
  const big = new Uint8Array(100_000).map((_, i) => (i * 7) & 0xff);
  s.append([
    { seq: 1, id: "a", bytes: new Uint8Array(0) },
    { seq: 2, id: "b", bytes: big },
  ]);
  s.close();
  const t = make("bytes");
  const loaded = t.load();
  strictEqual(loaded[0]?.bytes.length, 0);
  deepStrictEqual(Buffer.from(loaded[1]?.bytes ?? []), Buffer.from(big));
  t.close();
}

const CASES: ReadonlyArray<[string, (make: Make) => void]> = [
  ["stores, loads in seq order, forgets acknowledged records", storesLoadsForgets],
  ["keeps records across close and reopen", keepsAcrossReopen],
  ["appends a large batch at once, and removes it", largeBatch],
  ["removes exactly the seqs given: runs (a batch) and singles, in any order", removesExactly],
  ["keeps bytes exactly, including empty and large records", keepsBytesExactly],
];

/**
 * The contract every `RecordSpool` must pass (like mqtt.js's shared Store suite), free of any
 * test framework: run each case in yours, e.g. with vitest
 * `for (const c of spoolContractCases(make)) it(c.name, c.run)`.
 *
 * `make(name)` opens a spool on storage named `name`; opening the same name again after
 * `close()` must see what was stored (durability across a restart).
 */
export function spoolContractCases(make: (name: string) => RecordSpool): SpoolContractCase[] {
  return CASES.map(([name, check]) => ({ name, run: () => check(make) }));
}
