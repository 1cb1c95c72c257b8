// The key-update worker: checks payloads from <prefix>/keys/update off the event loop (see
// KeyUpdateCheck and KeyUpdateThread). Started by KeyUpdateThread with the options in
// workerData; one check at a time: "open" (signature and head), then "keys" or "drop".
import { createPublicKey } from "node:crypto";
import { parentPort, workerData } from "node:worker_threads";
import { KeyUpdateCheck, type KeyUpdateCheckOptions } from "./key-update-check.js";
import type { WorkerOptions, WorkerReply, WorkerRequest } from "./key-update-thread.js";

const given = workerData as WorkerOptions;
const options: KeyUpdateCheckOptions = {
  ...given,
  signers: new Map(
    given.signers.map(([name, spki, fingerprint]) => [
      name,
      {
        key: createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" }),
        fingerprint,
      },
    ]),
  ),
};
const port = parentPort;
let current: { id: number; check: KeyUpdateCheck } | undefined;

port?.on("message", (m: WorkerRequest) => {
  if (m.op === "drop") {
    if (current?.id === m.id) current = undefined;
    return;
  }
  try {
    if (m.op === "open") {
      current = undefined;
      const check = KeyUpdateCheck.open(m.payload, options);
      if (!(check instanceof KeyUpdateCheck)) return reply({ id: m.id, refusal: check });
      current = { id: m.id, check };
      return reply({ id: m.id, head: check.head });
    }
    const check = current?.id === m.id ? current.check : undefined;
    current = undefined;
    if (check === undefined) return reply({ id: m.id, error: "no such check" });
    const keys = check.keys();
    if (!("offsets" in keys)) return reply({ id: m.id, refusal: keys });
    const { bytes } = check;
    const transfer = [bytes.buffer, keys.offsets.buffer, keys.decoded.buffer] as ArrayBuffer[];
    reply({ id: m.id, bytes, ...keys }, transfer);
  } catch (err) {
    current = undefined;
    reply({ id: m.id, error: err instanceof Error ? err.message : String(err) });
  }
});

reply({ id: 0, ready: true });

function reply(r: WorkerReply, transfer: ArrayBuffer[] = []): void {
  port?.postMessage(r, transfer);
}
