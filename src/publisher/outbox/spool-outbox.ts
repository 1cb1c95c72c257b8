import { BillingError } from "../../billing-error.js";
import type { LogLevel } from "../../common/logger.js";
import type { PendingRecord } from "../pending-record.js";
import type { RecordSpool } from "../record-spool.js";

interface Waiting {
  record: PendingRecord;
  resolve: () => void;
  reject: (e: BillingError) => void;
}

/**
 * The BillingClient's side of a spool: group commit of new records (those of one event-loop
 * turn share one transaction) and batched deletion of acknowledged ones. Records reach
 * `onStored` (the send pipeline) only once they are durable. Depends only on the `RecordSpool`
 * interface: any implementation that passes the contract suite works.
 */
export class SpoolOutbox {
  private waitingRecords: Waiting[] = [];
  private acked: number[] = [];
  private scheduled = false;

  private constructor(
    private readonly spool: RecordSpool,
    private readonly onStored: (record: PendingRecord) => void,
    private readonly log: (level: LogLevel, message: string, fields?: object) => void,
  ) {}

  /**
   * Opens `spool` and returns it with the records an earlier run left, oldest first. Throws
   * `SPOOL` when it cannot be read (and closes it).
   */
  static open(
    spool: RecordSpool,
    onStored: (record: PendingRecord) => void,
    log: (level: LogLevel, message: string, fields?: object) => void,
  ): { outbox: SpoolOutbox; left: PendingRecord[] } {
    try {
      const left = spool.load().map((row) => ({
        seq: row.seq,
        id: row.id,
        bytes: Buffer.from(row.bytes.buffer, row.bytes.byteOffset, row.bytes.length),
        attempts: 0,
        losses: 0,
      }));
      if (left.length > 0) {
        log("info", `${left.length} records from an earlier run are queued first`, {
          records: left.length,
        });
      }
      return { outbox: new SpoolOutbox(spool, onStored, log), left };
    } catch (err) {
      spool.close();
      throw BillingError.from(err, "SPOOL");
    }
  }

  /** Records waiting for the next group commit. */
  get waiting(): number {
    return this.waitingRecords.length;
  }

  /** Resolves once `record` is stored; rejects with `SPOOL` when its group commit fails. */
  store(record: PendingRecord): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.waitingRecords.push({ record, resolve, reject });
      this.schedule();
    });
  }

  /** Forgets an acknowledged record (in the next batch). */
  acknowledged(seq: number): void {
    this.acked.push(seq);
    this.schedule();
  }

  /** Runs the pending commit and deletions now. */
  flush(): void {
    this.scheduled = false;
    if (this.acked.length > 0) {
      const acked = this.acked;
      this.acked = [];
      try {
        this.spool.remove(acked);
      } catch (err) {
        // Not a loss: those records would only be sent again (same id) after a restart.
        this.log("error", `acknowledged records stay in the spool: ${(err as Error).message}`);
      }
    }
    if (this.waitingRecords.length === 0) return;
    const batch = this.waitingRecords;
    this.waitingRecords = [];
    try {
      this.spool.append(batch.map((b) => b.record));
    } catch (err) {
      const e =
        err instanceof BillingError
          ? err
          : new BillingError("SPOOL", "the spool cannot store records", { cause: err });
      this.log("error", e.message, { records: batch.length });
      for (const b of batch) b.reject(e);
      return;
    }
    for (const b of batch) this.onStored(b.record);
    for (const b of batch) b.resolve();
  }

  /**
   * Flushes and closes the spool; logs how many records it keeps for the next start, and `why`
   * they were not delivered when it is known.
   */
  close(why?: string): void {
    this.flush();
    const kept = this.spool.count();
    this.spool.close();
    if (kept > 0) {
      const because = why === undefined ? "" : ` (${why})`;
      this.log("warn", `${kept} records stay in the spool and go out at the next start${because}`, {
        kept,
      });
    }
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }
}
