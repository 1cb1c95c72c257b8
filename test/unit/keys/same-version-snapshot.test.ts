import { afterEach, describe, expect, it } from "vitest";
import { KeyState } from "../../../gen/billing/v1/usage_pb.js";
import { KeyList } from "../../../src/keys/key-list.js";
import { KeyUpdateGate } from "../../../src/keys/key-update-gate.js";
import { type KeyEntry, keyUpdate, TEST_AUDIENCE, testSigner } from "../../helpers/fixtures.js";
import { bigKey, bigSnapshot } from "../../helpers/key-update-payloads.js";

// A backend that re-sends its list without a change keeps its version: such a snapshot (the same
// keys, a later sentAt) makes a stale list current again. Another list under the same version is
// refused (as invalid: two lists cannot share one), and the same payload again is a duplicate.

const A: KeyEntry = { key: "key-a", state: KeyState.ACTIVE, appId: "app-a" };
const B: KeyEntry = { key: "key-b", state: KeyState.BLOCKED, appId: "app-b", reason: "unpaid" };
const C: KeyEntry = { key: "key-c", state: KeyState.ACTIVE, appId: "app-c" };

const gates: KeyUpdateGate[] = [];
afterEach(() => {
  for (const g of gates.splice(0)) g.close();
});
function gate(maxAgeMs = 1000) {
  const keys = new KeyList();
  const g = new KeyUpdateGate(keys, {
    publicKeys: new Map([[testSigner.name, testSigner.publicKey]]),
    acceptUnsigned: false,
    maxKeys: 1_000_000,
    maxBytes: 64_000_000,
    maxAgeMs,
    audience: TEST_AUDIENCE,
    acceptUnbound: false,
  });
  gates.push(g);
  return { keys, g };
}
const snapshot = (version: bigint, keys: KeyEntry[], sentAtMs: number) =>
  keyUpdate(keys, true, { version, sentAtMs });

describe("a snapshot at the list's own version", () => {
  it("with the same keys and a later sentAt makes a stale list current again (applied, not refused)", async () => {
    const { keys, g } = gate();
    const now = Date.now();
    await g.receive(snapshot(7n, [A, B], now - 5000), now);
    expect(keys.usable).toBe(false); // stale when it arrived
    const resent = await g.receive(snapshot(7n, [A, B], now), now);
    expect(resent).toMatchObject({ applied: true, refreshed: true, changed: 0, gap: false });
    expect(keys.usable).toBe(true);
    expect(keys.usableUntil).toBe(now + 1000);
    expect(g.currentAt).toBe(now);
    expect(g.applied).toBe(2);
    expect(Object.values(g.refused).every((n) => n === 0)).toBe(true);
    expect(g.version).toBe(7n);
  });

  it("the same keys in another order are the same list", async () => {
    const { keys, g } = gate();
    const now = Date.now();
    await g.receive(snapshot(7n, [A, B, C], now - 5000), now);
    const resent = await g.receive(snapshot(7n, [C, A, B], now), now);
    expect(resent).toMatchObject({ applied: true, refreshed: true });
    expect(keys.usable).toBe(true);
  });

  it("with other keys is refused as invalid, and the list stays as it was (stale)", async () => {
    const { keys, g } = gate();
    const now = Date.now();
    await g.receive(snapshot(7n, [A, B], now - 5000), now);
    for (const other of [[A], [A, B, C], [A, { ...B, state: KeyState.ACTIVE }]]) {
      const r = await g.receive(snapshot(7n, other, now), now);
      expect(r).toMatchObject({ applied: false, reason: "invalid" });
      expect(r.applied === false && r.reason !== undefined && r.detail).toMatch(
        /version 7 was applied already with other keys/,
      );
    }
    expect(g.refused.invalid).toBe(3);
    expect(keys.usable).toBe(false);
    expect(keys.lookup(C.key)).toBeUndefined();
    expect(keys.lookup(B.key)?.state).toBe(KeyState.BLOCKED);
  });

  it("the same payload again, or one sent no later, is a duplicate: no refresh", async () => {
    const { keys, g } = gate();
    const now = Date.now();
    const first = snapshot(7n, [A, B], now - 400);
    await g.receive(first, now);
    expect(await g.receive(first, now + 500)).toMatchObject({ reason: "duplicate" });
    expect(await g.receive(snapshot(7n, [A, B], now - 600), now + 500)).toMatchObject({
      reason: "duplicate",
    });
    expect(keys.usableUntil).toBe(now + 600);
    expect(g.refused.duplicate).toBe(2);
  });

  it("a version reached by a delta: the snapshot at it is taken whole (the list it names)", async () => {
    const { keys, g } = gate();
    const now = Date.now();
    await g.receive(snapshot(7n, [A], now - 900), now);
    await g.receive(keyUpdate([B], false, { version: 8n, sentAtMs: now - 800 }), now);
    // Nothing to compare it with: the backend's list at version 8, applied as any snapshot.
    const whole = await g.receive(snapshot(8n, [A, B, C], now), now);
    expect(whole).toMatchObject({ applied: true, refreshed: false });
    expect(keys.lookup(C.key)?.appId).toBe("app-c");
    expect(keys.usableUntil).toBe(now + 1000);
    // Now it has one: the same version with other keys is refused.
    expect(await g.receive(snapshot(8n, [A], now + 10), now + 10)).toMatchObject({
      reason: "invalid",
    });
  });

  it("a large list re-sent (checked in the worker) refreshes the age without being rebuilt", async () => {
    const { keys, g } = gate(60_000); // building the payloads takes seconds
    const now = Date.now();
    const big = (sentAtMs: number) =>
      bigSnapshot(50_000, {
        version: 9n,
        audience: TEST_AUDIENCE,
        sentAtMs,
        signer: testSigner,
      });
    await g.receive(big(now - 120_000), now);
    const before = keys.lookup(bigKey("big", 7)); // the entry objects stay as they are
    expect(keys.usable).toBe(false);
    expect(await g.receive(big(now), now)).toMatchObject({ applied: true, refreshed: true });
    expect(keys.usable).toBe(true);
    expect(keys.lookup(bigKey("big", 7))).toBe(before);
  }, 30_000);
});
