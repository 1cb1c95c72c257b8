import { generateKeyPairSync, sign } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import {
  KeyState,
  KeyStatusSchema,
  KeyUpdateSchema,
  SignedKeyUpdateSchema,
} from "../../gen/billing/v1/usage_pb.js";
import { KeyList, signKeyUpdate } from "../../src/index.js";
import { KeyUpdateGate, type KeyUpdateGateOptions } from "../../src/keys/key-update-gate.js";
import {
  type KeyEntry,
  keyUpdateMessage,
  testSigner,
  unsignedKeyUpdate,
} from "../helpers/fixtures.js";

// The gate on its own: a real KeyList, real Ed25519 keys, a clock passed in.
const A: KeyEntry = { key: "key-a", state: KeyState.ACTIVE, appId: "app-a" };
const B: KeyEntry = { key: "key-b", state: KeyState.BLOCKED, appId: "app-b", reason: "unpaid" };
const EVIL: KeyEntry = { key: "attacker-chosen-key", state: KeyState.ACTIVE, appId: "evil" };

function gate(extra: Partial<KeyUpdateGateOptions> = {}) {
  const keys = new KeyList();
  const g = new KeyUpdateGate(keys, {
    publicKeys: new Map([[testSigner.name, testSigner.publicKey]]),
    acceptUnsigned: false,
    maxKeys: 1000,
    maxBytes: 1_000_000,
    maxAgeMs: undefined,
    ...extra,
  });
  return { keys, g };
}
const signed = (u: ReturnType<typeof keyUpdateMessage>) =>
  signKeyUpdate(u, testSigner.privateKey, testSigner.name);
const snapshot = (version: bigint, keys: KeyEntry[] = [A, B], sentAtMs?: number) =>
  signed(
    keyUpdateMessage(keys, true, { version, ...(sentAtMs === undefined ? {} : { sentAtMs }) }),
  );
const delta = (version: bigint, keys: KeyEntry[] = [EVIL]) =>
  signed(keyUpdateMessage(keys, false, { version }));

/** The list as plain data, to prove a refusal changed nothing. */
const contents = (keys: KeyList) => ({
  size: keys.size,
  entries: [A, B, EVIL].map((k) => keys.lookup(k.key)),
});

describe("KeyUpdateGate", () => {
  it("applies a signed snapshot, then a delta with the next version", () => {
    const { keys, g } = gate();
    const first = g.receive(snapshot(10n));
    expect(first).toMatchObject({ applied: true, gap: false });
    expect(keys.loaded).toBe(true);
    expect(keys.lookup("key-b")).toEqual({
      state: KeyState.BLOCKED,
      appId: "app-b",
      reason: "unpaid",
    });
    expect(g.receive(delta(11n))).toMatchObject({ applied: true, gap: false });
    expect(keys.lookup(EVIL.key)?.appId).toBe("evil");
    expect(g.version).toBe(11n);
    expect(g.applied).toBe(2);
  });

  it("refuses forgeries, replays and garbage by reason, each leaving the list as it was", () => {
    const { keys, g } = gate();
    g.receive(snapshot(10n));
    const before = contents(keys);
    const good = delta(11n);
    const flipped = Buffer.from(good);
    flipped[12] = (flipped[12] as number) ^ 0x01; // one bit inside key_update
    const badSig = Buffer.from(good);
    badSig[badSig.length - 30] = (badSig[badSig.length - 30] as number) ^ 0x80; // in the signature
    const attacker = generateKeyPairSync("ed25519");
    const cases: Array<[string, Uint8Array]> = [
      ["badSignature", flipped],
      ["badSignature", badSig],
      // A known signer's name on a signature by another key.
      [
        "badSignature",
        signKeyUpdate(
          keyUpdateMessage([EVIL], false, { version: 11n }),
          attacker.privateKey,
          testSigner.name,
        ),
      ],
      [
        "unknownSigner",
        signKeyUpdate(
          keyUpdateMessage([EVIL], false, { version: 11n }),
          attacker.privateKey,
          "attacker",
        ),
      ],
      ["missingSignature", unsignedKeyUpdate(keyUpdateMessage([EVIL], true, { version: 99n }))],
      [
        "missingSignature",
        unsignedKeyUpdate(keyUpdateMessage([EVIL], true, { version: 99n }), testSigner.name),
      ],
      ["undecodable", Buffer.from([0x10, 0x01])], // the 2-byte "empty snapshot" of the old format
      ["undecodable", Buffer.from([0xff, 0xff, 0xff, 0x0f])],
      ["undecodable", new Uint8Array(0)], // a retained message being cleared
      ["undecodable", sign0(Buffer.from([0x0a, 0x05, 0x01]))], // signed bytes that are no KeyUpdate
      ["replayed", snapshot(9n, [A, B, EVIL])],
      ["duplicate", snapshot(10n, [A, B, EVIL])],
      [
        "invalid",
        sign0(toBinary(KeyUpdateSchema, create(KeyUpdateSchema, { snapshot: true, keys: [] }))),
      ],
    ];
    for (const [reason, payload] of cases) {
      expect(g.receive(payload), reason).toMatchObject({ applied: false, reason });
      expect(contents(keys), reason).toEqual(before);
    }
    expect(g.refused).toEqual({
      missingSignature: 2,
      unknownSigner: 1,
      badSignature: 3,
      undecodable: 4,
      invalid: 1,
      replayed: 1,
      duplicate: 1,
      tooLarge: 0,
    });
    expect(g.version).toBe(10n);
    expect(g.receive(good)).toMatchObject({ applied: true }); // the real one still applies
  });

  it("refuses a signed update without sentAt or with a key that is not a fingerprint", () => {
    const { keys, g } = gate();
    const noTime = create(KeyUpdateSchema, { snapshot: true, version: 5n });
    const badKey = create(KeyUpdateSchema, {
      snapshot: true,
      version: 5n,
      sentAt: { seconds: 1n, nanos: 0 },
      keys: [create(KeyStatusSchema, { apiKeySha256: "A".repeat(64), state: KeyState.ACTIVE })],
    });
    for (const u of [noTime, badKey]) {
      const r = g.receive(sign0(toBinary(KeyUpdateSchema, u)));
      expect(r).toMatchObject({ applied: false, reason: "invalid" });
    }
    expect(keys.loaded).toBe(false);
  });

  it("with acceptUnsigned takes unsigned updates, still verifies signed ones", () => {
    const { keys, g } = gate({ acceptUnsigned: true, publicKeys: new Map() });
    expect(
      g.receive(unsignedKeyUpdate(keyUpdateMessage([A], true, { version: 3n }))),
    ).toMatchObject({
      applied: true,
    });
    expect(keys.lookup("key-a")?.appId).toBe("app-a");
    expect(g.receive(delta(4n))).toMatchObject({ applied: false, reason: "unknownSigner" });
  });

  it("a delta that skips versions applies and reports a gap; one before any snapshot sets no version", () => {
    const { keys, g } = gate();
    expect(g.receive(delta(50n))).toMatchObject({ applied: true, gap: false });
    expect(keys.loaded).toBe(false);
    expect(g.version).toBe(0n);
    expect(g.receive(snapshot(20n))).toMatchObject({ applied: true });
    expect(keys.lookup(EVIL.key)).toBeUndefined(); // the snapshot replaced it
    expect(g.receive(delta(25n))).toMatchObject({ applied: true, gap: true });
    expect(keys.lookup(EVIL.key)?.appId).toBe("evil");
    expect(g.version).toBe(25n);
  });

  it("maxKeys: a larger snapshot, or a delta that would grow past it, is refused", () => {
    const { keys, g } = gate({ maxKeys: 3 });
    expect(
      g.receive(snapshot(1n, [A, B, EVIL, { key: "k4", state: KeyState.ACTIVE }])),
    ).toMatchObject({
      reason: "tooLarge",
    });
    expect(keys.loaded).toBe(false);
    g.receive(snapshot(2n, [A, B]));
    const grow = [EVIL, { key: "k4", state: KeyState.ACTIVE }];
    expect(g.receive(delta(3n, grow))).toMatchObject({ reason: "tooLarge" });
    expect(keys.size).toBe(2);
    // At the cap, a delta that changes or swaps keys still applies.
    const swap = [{ ...A, state: KeyState.DELETED }, EVIL, { ...B, reason: "still unpaid" }];
    expect(g.receive(delta(3n, swap))).toMatchObject({ applied: true });
    expect(keys.size).toBe(2);
    expect(g.receive(delta(4n, [{ key: "k5", state: KeyState.ACTIVE }]))).toMatchObject({
      applied: true,
    });
    expect(keys.size).toBe(3);
    expect(g.refused.tooLarge).toBe(2);
  });

  it("maxBytes: a larger payload is refused before it is decoded", () => {
    const { g } = gate({ maxBytes: 100 });
    expect(g.receive(new Uint8Array(101))).toMatchObject({ reason: "tooLarge" });
    expect(g.receive(snapshot(1n, [A]))).toMatchObject({ reason: "tooLarge" }); // ~200 bytes
  });

  it("staleness: the age runs from the signed sentAt (never later than arrival), not refreshed by replays", () => {
    const { keys, g } = gate({ maxAgeMs: 1000 });
    const now = Date.now();
    g.receive(snapshot(1n, [A], now - 400), now);
    expect(keys.usableUntil).toBe(now + 600);
    expect(keys.usable).toBe(true);
    g.receive(snapshot(1n, [A], now), now + 500); // the same version again: no refresh
    expect(keys.usableUntil).toBe(now + 600);
    g.receive(snapshot(2n, [A], now + 10_000), now); // sent "in the future": from its arrival
    expect(keys.usableUntil).toBe(now + 1000);
    g.receive(delta(9n), now + 800); // a gap: the list may miss an update, no refresh
    expect(keys.usableUntil).toBe(now + 1000);
    g.receive(snapshot(10n, [A], now - 5000), now); // already stale when it arrives
    expect(keys.loaded).toBe(true);
    expect(keys.usable).toBe(false);
  });
});

/** Signs arbitrary bytes as a key_update (what only a broken backend would do). */
function sign0(keyUpdate: Uint8Array): Uint8Array {
  return toBinary(
    SignedKeyUpdateSchema,
    create(SignedKeyUpdateSchema, {
      keyUpdate,
      signature: sign(null, keyUpdate, testSigner.privateKey),
      signer: testSigner.name,
    }),
  );
}
