import { afterEach, describe, expect, it } from "vitest";
import { KeyState } from "../../../gen/billing/v1/usage_pb.js";
import { KeyList } from "../../../src/keys/key-list.js";
import { KeyUpdateGate, type KeyUpdateGateOptions } from "../../../src/keys/key-update-gate.js";
import { MAX_WAITING_UPDATES } from "../../../src/keys/key-update-line.js";
import type { KeyUpdateOutcome } from "../../../src/keys/key-update-outcome.js";
import { keyUpdate, TEST_AUDIENCE, testSigner } from "../../helpers/fixtures.js";
import { forgedOuterFields } from "../../helpers/key-update-payloads.js";
import { watchLoop } from "../../helpers/loop-block.js";
import { sleep } from "../../helpers/time.js";

// Forged key updates pile up while the worker checks a large one; however long the line grows,
// deciding it must not hold the event loop: it is decided a few milliseconds per turn, what
// waited is checked in the worker, and past MAX_WAITING_UPDATES waiting an update is lost (which
// asks for a snapshot). The old code decided the whole line in one chain of promise callbacks
// when the worker answered: 1,000 forgeries of 64 KB behind a 10 MB one held the loop ~2-3 s,
// 20,000 tiny ones ~3 s, and without a worker 1,000 of 64 KB ~2 s. The bound below (200 ms) is
// loose for a loaded machine, and far below that.

const gates: KeyUpdateGate[] = [];
afterEach(() => {
  for (const g of gates.splice(0)) g.close();
});
function gate(extra: Partial<KeyUpdateGateOptions> = {}) {
  const keys = new KeyList();
  const g = new KeyUpdateGate(keys, {
    publicKeys: new Map([[testSigner.name, testSigner.publicKey]]),
    acceptUnsigned: false,
    maxKeys: 1_000_000,
    maxBytes: 128_000_000,
    maxAgeMs: undefined,
    audience: TEST_AUDIENCE,
    acceptUnbound: false,
    ...extra,
  });
  gates.push(g);
  return { keys, g };
}

/** 64 KB, checked on the event loop when nothing waits before it (~2 ms a check). */
const SMALL = forgedOuterFields(32_700, 5n, testSigner.name);
/** 90 bytes: a signature check each (~0.1-0.2 ms). */
const TINY = forgedOuterFields(0, 5n, testSigner.name);
/** 10 MB: some hundreds of ms in the worker, while the others pile up. */
const BIG = forgedOuterFields(5_000_000, 5n, testSigner.name);

/** Receives `payloads` in one go (in arrival order); the outcomes, and the longest loop block. */
async function receiveAll(g: KeyUpdateGate, payloads: Uint8Array[]) {
  await sleep(20);
  const watch = watchLoop(2);
  const decided: number[] = [];
  const outcomes = await Promise.all(
    payloads.map((p, i) =>
      g.receive(p).then((o) => {
        decided.push(i);
        return o;
      }),
    ),
  );
  await sleep(20);
  return { outcomes, decided, ...watch.stop() };
}

const lost = (o: KeyUpdateOutcome) => !o.applied && o.reason === undefined;
const refused = (o: KeyUpdateOutcome) => (o.applied ? undefined : o.reason);

describe("a backlog of key updates never holds the event loop long", () => {
  it("1,000 forgeries of 64 KB behind a 10 MB one: refused in arrival order, the loop held < 200 ms", async () => {
    const { keys, g } = gate();
    expect(
      await g.receive(keyUpdate([{ key: "k", state: KeyState.ACTIVE }], true, { version: 1n })),
    ).toMatchObject({ applied: true });
    await g.receive(forgedOuterFields(40_000, 5n, testSigner.name)); // the worker is up
    const revoke = keyUpdate([{ key: "k", state: KeyState.BLOCKED }], false, { version: 2n });
    const r = await receiveAll(g, [BIG, ...Array(999).fill(SMALL), revoke]);
    expect(r.outcomes.slice(0, 1000).map(refused)).toEqual(Array(1000).fill("badSignature"));
    expect(r.outcomes[1000]).toMatchObject({ applied: true }); // the genuine one, last in line
    expect(r.decided).toEqual([...r.decided].sort((a, b) => a - b)); // arrival order
    expect(keys.lookup("k")?.state).toBe(KeyState.BLOCKED);
    expect(r.maxBlockMs).toBeLessThan(200);
  }, 60_000);

  it(`past ${MAX_WAITING_UPDATES} waiting, tiny forgeries are lost (asking for a snapshot), the loop held < 200 ms`, async () => {
    const { g } = gate();
    await g.receive(forgedOuterFields(40_000, 5n, testSigner.name)); // the worker is up
    const r = await receiveAll(g, [BIG, ...Array(20_000).fill(TINY)]);
    expect(r.maxBlockMs).toBeLessThan(200);
    const decided = r.outcomes.filter((o) => !lost(o));
    expect(decided.map(refused)).toEqual(Array(MAX_WAITING_UPDATES + 1).fill("badSignature"));
    expect(r.outcomes.filter(lost)).toHaveLength(20_000 - MAX_WAITING_UPDATES);
    const one = r.outcomes.find(lost);
    expect(one?.applied === false && one.reason === undefined && one.lost).toMatch(
      /1000 earlier key updates were waiting/,
    );
    expect(g.complete).toBe(false); // a lost update may have been genuine
  }, 60_000);

  it("without a worker (checked on the loop), 1,000 forgeries of 64 KB are decided a few ms per turn", async () => {
    const { g } = gate({ workerUrl: new URL("./no-such-worker.ts", import.meta.url) });
    const r = await receiveAll(g, Array(1000).fill(SMALL));
    expect(r.outcomes.map(refused)).toEqual(Array(1000).fill("badSignature"));
    expect(r.decided).toEqual([...r.decided].sort((a, b) => a - b));
    expect(r.maxBlockMs).toBeLessThan(200);
  }, 60_000);
});
