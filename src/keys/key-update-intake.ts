import type { LogLevel } from "../common/logger.js";
import {
  type CheckedKeys,
  KeyUpdateCheck,
  type KeyUpdateCheckOptions,
  type KeyUpdateHead,
} from "./key-update-check.js";
import type { Refusal } from "./key-update-refusal.js";
import { KeyUpdateThread, KeyUpdateThreadError } from "./key-update-thread.js";

/** A payload checked up to its keys, wherever it was checked. */
export interface Opened {
  readonly head: KeyUpdateHead;
  /** Checks its keys. */
  readonly keys: () => Promise<Refusal | ({ bytes: Buffer } & CheckedKeys)>;
  /** Forgets it (the list will not take it). */
  readonly drop: () => void;
}

/** Where and how payloads are checked (from the gate's options). */
export interface KeyUpdateIntakeOptions {
  /** Payloads up to this many bytes are checked on the event loop. Default: 65,536. */
  inlineBytes?: number | undefined;
  /** Where it says that the worker could not start. Default: nowhere. */
  log?: ((level: LogLevel, message: string) => void) | undefined;
  /** The worker's module. Default: the SDK's key-update worker. */
  workerUrl?: URL | undefined;
}

/**
 * Checks payloads (`KeyUpdateCheck`) where it costs the event loop least: a small one on it (its
 * cost is bounded by its size: measured at about 2 ms median and 25 ms at worst for 64 KB shaped
 * to cost most, a signature check for a tiny one), a larger one, or any one that waited behind
 * others, in the key-update worker, started on first use. If the worker cannot start (a bundler left its file behind, say), it says
 * so once and checks everything on the event loop from then on: slower, never less strict.
 */
export class KeyUpdateIntake {
  private worker: KeyUpdateThread | undefined;
  private inlineOnly = false;
  private readonly inlineBytes: number;

  constructor(
    private readonly check: KeyUpdateCheckOptions,
    private readonly o: KeyUpdateIntakeOptions,
  ) {
    this.inlineBytes = o.inlineBytes ?? 65_536;
  }

  /** The key-update worker, once started. */
  get thread(): KeyUpdateThread | undefined {
    return this.worker;
  }

  /**
   * Checks `payload` up to its keys (with `owned`, its memory may be handed to the worker). With
   * `queued` (it waited behind others: a backlog exists), even a small one goes to the worker,
   * so that a backlog of small payloads costs the event loop a message each, not a check each.
   */
  async open(payload: Uint8Array, owned: boolean, queued = false): Promise<Opened | Refusal> {
    if (this.inlineOnly || (payload.length <= this.inlineBytes && !queued)) {
      return this.openInline(payload);
    }
    this.worker ??= new KeyUpdateThread(this.check, this.o.workerUrl);
    const thread = this.worker;
    let r: Awaited<ReturnType<KeyUpdateThread["open"]>>;
    try {
      r = await thread.open(payload, owned);
    } catch (err) {
      if (!(err instanceof KeyUpdateThreadError) || !err.unstartable) throw err;
      this.inlineOnly = true; // the payload was not sent: check it here
      this.o.log?.(
        "warn",
        `${err.message}: key updates are checked on the event loop from now on, and a large one holds it while it is checked`,
      );
      return this.openInline(payload);
    }
    if (!("head" in r)) return r;
    return { head: r.head, keys: () => thread.keys(r.id), drop: () => thread.drop(r.id) };
  }

  /** Ends the worker. */
  close(): void {
    this.worker?.close();
  }

  private openInline(payload: Uint8Array): Opened | Refusal {
    const check = KeyUpdateCheck.open(payload, this.check);
    if (!(check instanceof KeyUpdateCheck)) return check;
    return {
      head: check.head,
      keys: async () => {
        const keys = check.keys();
        return "offsets" in keys ? { bytes: check.bytes, ...keys } : keys;
      },
      drop: () => {},
    };
  }
}
