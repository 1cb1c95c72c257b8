import type { UsageRecord } from "../../gen/billing/v1/usage_pb.js";
import { BillingError } from "../billing-error.js";
import { idConflict } from "../consumer/id-conflict.js";
import type { RejectedRecord } from "../consumer/usage-store.js";
import type { Query } from "./sql-client.js";
import { recordsJson, rejectedJson, type WriteRow } from "./write-statement.js";

/** What writing a batch did. */
export interface WriteOutcome {
  /** Records inserted (and added to the rollups). */
  inserted: number;
  /** Indexes (in the records given) of those whose id was stored before with other content. */
  conflicts: number[];
  /** Rejections newly stored in rejected_records, conflicts included. */
  rejectedStored: number;
}

/**
 * Writes `records` and `rejected` with `statement` (`writeStatement`) on `q`: usually one run.
 * Each run holds an id at most once; an id that comes again in the batch, or that another
 * transaction stored while the run went (not in its snapshot: `unresolved`), goes in the next
 * run, which compares it with the row now stored. Each run is atomic with its rollups; the runs
 * after the first only settle such records, and any of them may be made again (a write is
 * idempotent). Records whose id was stored with other content are conflicts: never billed, kept
 * in rejected_records with a reason naming the id and the columns that differ.
 */
export async function writeRecords(
  q: Query,
  statement: string,
  records: readonly UsageRecord[],
  rejected: readonly RejectedRecord[],
): Promise<WriteOutcome> {
  const out: WriteOutcome = { inserted: 0, conflicts: [], rejectedStored: 0 };
  const conflicts: RejectedRecord[] = [];
  let pending = records.map((_, i) => i);
  let rejections = rejected;
  // Each run settles at least one record of every id it holds, but for a race (settled by the
  // next run): a bound that is never reached unless the database misbehaves.
  for (let runs = 0; pending.length > 0 || rejections.length > 0; runs++) {
    if (runs > records.length + 8) {
      throw new BillingError("STORE", `${pending.length} records could not be settled`);
    }
    const ids = new Map<string, number>();
    const later: number[] = [];
    for (const i of pending) {
      const id = (records[i] as UsageRecord).id.toLowerCase();
      if (ids.has(id)) later.push(i);
      else ids.set(id, i);
    }
    const run = [...ids.values()];
    const rows = await q<WriteRow>(statement, [
      recordsJson(run.map((i) => records[i] as UsageRecord)),
      rejectedJson(rejections),
    ]);
    const row = rows[0] as WriteRow;
    rejections = [];
    out.inserted += Number(row.inserted);
    out.rejectedStored += Number(row.rejected_stored);
    for (const c of row.conflicts) {
      const i = ids.get(c.id) as number;
      out.conflicts.push(i);
      const what = `stored before with a different ${c.columns.join(", ")}`;
      conflicts.push(idConflict(records[i] as UsageRecord, what));
    }
    const unresolved = new Set(row.unresolved);
    const left = (i: number) => unresolved.has((records[i] as UsageRecord).id.toLowerCase());
    pending = [...run.filter(left), ...later];
    pending.sort((a, b) => a - b);
  }
  if (conflicts.length > 0) {
    const rows = await q<WriteRow>(statement, ["[]", rejectedJson(conflicts)]);
    out.rejectedStored += Number(rows[0]?.rejected_stored ?? 0);
  }
  out.conflicts.sort((a, b) => a - b);
  return out;
}
