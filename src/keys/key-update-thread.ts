import { Worker } from "node:worker_threads";
import type { CheckedKeys, KeyUpdateCheckOptions, KeyUpdateHead } from "./key-update-check.js";
import type { Refusal } from "./key-update-refusal.js";

/** The options as the worker gets them (`workerData`): keys as SPKI DER. */
export interface WorkerOptions extends Omit<KeyUpdateCheckOptions, "signers"> {
  readonly signers: Array<[name: string, spki: Uint8Array, fingerprint: string]>;
}

export type WorkerRequest =
  | { op: "open"; id: number; payload: Uint8Array }
  | { op: "keys"; id: number }
  | { op: "drop"; id: number };

export type WorkerReply =
  | { id: 0; ready: true }
  | { id: number; refusal: Refusal }
  | { id: number; head: KeyUpdateHead }
  | ({ id: number; bytes: Uint8Array } & CheckedKeys)
  | { id: number; error: string };

/** The checked keys, as they come back from the worker. */
export type WorkerKeys = { bytes: Buffer } & CheckedKeys;

/** Why the worker could not answer: it stopped (or never started), or was closed. */
export class KeyUpdateThreadError extends Error {
  constructor(
    message: string,
    /** True when the worker never came up (the inline checks take over). */
    readonly unstartable: boolean,
  ) {
    super(message);
  }
}

/** How long the worker may take to load. */
const START_MS = 30_000;

/** The worker's file next to this one: `.ts` when run from source (tests), `.js` from `dist/`. */
const here = import.meta.url;
const entry = new URL(`./key-update-worker.${here.endsWith(".ts") ? "ts" : "js"}`, here);

function startWorker(workerData: WorkerOptions, url: URL): Worker {
  if (!url.pathname.endsWith(".ts")) return new Worker(url, { workerData });
  // From TypeScript source (tests, tsx): the worker loads it through tsx, a dev dependency.
  const tsx = import.meta.resolve("tsx/esm/api");
  const boot = `import(${JSON.stringify(tsx)}).then((api) => { api.register(); return import(${JSON.stringify(url.href)}); });`;
  return new Worker(boot, { eval: true, workerData });
}

/**
 * The key-update worker seen from the client's thread: started on first use, `unref`ed (it never
 * keeps a process alive), started again after it died, ended by `close`. One check at a time
 * (the gate asks in turn). Payloads go over by transfer when they own their memory (no copy on
 * the event loop), else as a copy.
 */
export class KeyUpdateThread {
  private worker: Worker | undefined;
  private ready: Promise<Worker> | undefined;
  private nextId = 1;
  private pending:
    | { id: number; resolve: (r: WorkerReply) => void; reject: (e: Error) => void }
    | undefined;
  private closed = false;
  private readonly data: WorkerOptions;

  constructor(
    options: KeyUpdateCheckOptions,
    /** The worker's module (tests point it elsewhere). Default: key-update-worker next to this. */
    private readonly url: URL = entry,
  ) {
    this.data = {
      ...options,
      signers: [...options.signers].map(([name, p]) => [
        name,
        new Uint8Array(p.key.export({ format: "der", type: "spki" })),
        p.fingerprint,
      ]),
    };
  }

  /** The running worker, if any (tests end it to prove that it is started again). */
  get thread(): Worker | undefined {
    return this.worker;
  }

  /**
   * Decodes and verifies `payload` in the worker; `owned`: its memory may be taken (transferred)
   * when it is a whole buffer of its own. Resolves with a refusal or the head, and then `keys()`
   * (or `drop()`) must follow.
   */
  async open(
    payload: Uint8Array,
    owned: boolean,
  ): Promise<{ id: number } & (Refusal | { head: KeyUpdateHead })> {
    const own =
      owned &&
      payload.byteOffset === 0 &&
      payload.byteLength === payload.buffer.byteLength &&
      payload.buffer instanceof ArrayBuffer;
    // A copy, never Buffer#slice (a view: its memory would be taken from the caller).
    const sent = own ? payload : new Uint8Array(payload);
    const id = this.nextId++;
    const r = await this.ask({ op: "open", id, payload: sent }, [sent.buffer as ArrayBuffer]);
    if ("refusal" in r) return { id, ...r.refusal };
    if ("head" in r) return { id, head: r.head };
    throw this.failed(r);
  }

  /** Checks every key of the update `open` gave `id`. */
  async keys(id: number): Promise<Refusal | WorkerKeys> {
    const r = await this.ask({ op: "keys", id }, []);
    if ("refusal" in r) return r.refusal;
    if ("bytes" in r) {
      const b = r.bytes;
      return {
        bytes: Buffer.from(b.buffer, b.byteOffset, b.byteLength),
        offsets: r.offsets,
        decoded: r.decoded,
      };
    }
    throw this.failed(r);
  }

  /** Forgets the update `open` gave `id` (the list will not take it). */
  drop(id: number): void {
    this.worker?.postMessage({ op: "drop", id } satisfies WorkerRequest);
  }

  /** Ends the worker; pending and later checks fail. */
  close(): void {
    this.closed = true;
    const w = this.worker;
    this.worker = undefined;
    this.ready = undefined;
    this.fail(new KeyUpdateThreadError("the client is closing", false));
    void w?.terminate();
  }

  private failed(r: WorkerReply): Error {
    return new KeyUpdateThreadError(
      `the key-update worker failed: ${"error" in r ? r.error : "an unexpected reply"}`,
      false,
    );
  }

  private async ask(m: WorkerRequest, transfer: ArrayBuffer[]): Promise<WorkerReply> {
    const w = await (this.ready ?? this.start());
    if (this.closed) throw new KeyUpdateThreadError("the client is closing", false);
    return new Promise((resolve, reject) => {
      this.pending = { id: m.id, resolve, reject };
      try {
        w.postMessage(m, transfer);
      } catch {
        w.postMessage(m); // memory that cannot be handed over goes as a copy
      }
    });
  }

  /** Starts the worker; resolves once it has loaded, rejects (unstartable) if it cannot. */
  private start(): Promise<Worker> {
    if (this.closed)
      return Promise.reject(new KeyUpdateThreadError("the client is closing", false));
    const w = startWorker(this.data, this.url);
    w.unref();
    this.worker = w;
    let up = false;
    const ready = new Promise<Worker>((resolve, reject) => {
      let late: NodeJS.Timeout | undefined;
      const died = (message: string) => {
        clearTimeout(late);
        const err = new KeyUpdateThreadError(message, !up && !this.closed);
        if (!up) reject(err); // also when closed while starting: nothing waits forever
        if (this.worker !== w) return;
        this.worker = undefined;
        this.ready = undefined;
        this.fail(err);
      };
      // A worker that never comes up counts as one that cannot start (checks go inline).
      late = setTimeout(() => {
        died(`the key-update worker did not start within ${START_MS / 1000} s`);
        void w.terminate();
      }, START_MS);
      late.unref();
      w.on("message", (r: WorkerReply) => {
        if ("ready" in r) {
          up = true;
          clearTimeout(late);
          resolve(w);
          return;
        }
        const p = this.pending;
        if (p === undefined || p.id !== r.id) return;
        this.pending = undefined;
        p.resolve(r);
      });
      w.on("error", (err) => died(`the key-update worker failed: ${err.message}`));
      w.on("exit", (code) => died(`the key-update worker stopped (exit code ${code})`));
    });
    this.ready = ready;
    return ready;
  }

  private fail(err: KeyUpdateThreadError): void {
    const p = this.pending;
    this.pending = undefined;
    p?.reject(err);
  }
}
