import { generateKeyPairSync, sign } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import {
  KeyState,
  KeyStatusSchema,
  KeyUpdateSchema,
  SignedKeyUpdateSchema,
} from "../../../gen/billing/v1/usage_pb.js";
import { KeyList, signKeyUpdate } from "../../../src/index.js";
import { KeyUpdateGate, type KeyUpdateGateOptions } from "../../../src/keys/key-update-gate.js";
import {
  type KeyEntry,
  keyUpdateMessage,
  TEST_AUDIENCE,
  testSigner,
  unsignedKeyUpdate,
} from "../../helpers/fixtures.js";

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
    audience: TEST_AUDIENCE,
    acceptUnbound: false,
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
  it("applies a signed snapshot, then a delta with the next version", async () => {
    const { keys, g } = gate();
    const first = await g.receive(snapshot(10n));
    expect(first).toMatchObject({ applied: true, gap: false });
    expect(keys.loaded).toBe(true);
    expect(keys.lookup("key-b")).toEqual({
      state: KeyState.BLOCKED,
      appId: "app-b",
      reason: "unpaid",
    });
    expect(await g.receive(delta(11n))).toMatchObject({ applied: true, gap: false });
    expect(keys.lookup(EVIL.key)?.appId).toBe("evil");
    expect(g.version).toBe(11n);
    expect(g.applied).toBe(2);
  });

  it("refuses forgeries, replays and garbage by reason, each leaving the list as it was", async () => {
    const { keys, g } = gate();
    const first = snapshot(10n);
    await g.receive(first);
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
      ["duplicate", first], // sent again as it was
      ["duplicate", delta(10n)],
      ["invalid", snapshot(10n, [A, B, EVIL])], // another list under the same version
      [
        "invalid",
        sign0(toBinary(KeyUpdateSchema, create(KeyUpdateSchema, { snapshot: true, keys: [] }))),
      ],
      [
        "wrongAudience",
        signed(keyUpdateMessage([EVIL], true, { version: 12n, audience: "staging" })),
      ],
      ["wrongAudience", signed(keyUpdateMessage([EVIL], true, { version: 12n, audience: "" }))],
    ];
    for (const [reason, payload] of cases) {
      expect(await g.receive(payload), reason).toMatchObject({ applied: false, reason });
      expect(contents(keys), reason).toEqual(before);
    }
    expect(g.refused).toEqual({
      missingSignature: 2,
      unknownSigner: 1,
      badSignature: 3,
      undecodable: 4,
      invalid: 2,
      replayed: 1,
      duplicate: 2,
      tooLarge: 0,
      wrongAudience: 2,
    });
    expect(g.version).toBe(10n);
    expect(await g.receive(good)).toMatchObject({ applied: true }); // the real one still applies
  });

  it("refuses a signed update without sentAt or with a key that is not a fingerprint", async () => {
    const { keys, g } = gate();
    const noTime = create(KeyUpdateSchema, { snapshot: true, version: 5n });
    const badKey = create(KeyUpdateSchema, {
      snapshot: true,
      version: 5n,
      audience: TEST_AUDIENCE,
      sentAt: { seconds: 1n, nanos: 0 },
      keys: [create(KeyStatusSchema, { apiKeySha256: "A".repeat(64), state: KeyState.ACTIVE })],
    });
    for (const u of [noTime, badKey]) {
      const r = await g.receive(sign0(toBinary(KeyUpdateSchema, u)));
      expect(r).toMatchObject({ applied: false, reason: "invalid" });
    }
    expect(keys.loaded).toBe(false);
  });

  it("with acceptUnsigned takes unsigned updates, still verifies signed ones", async () => {
    const { keys, g } = gate({ acceptUnsigned: true, publicKeys: new Map() });
    expect(
      await g.receive(unsignedKeyUpdate(keyUpdateMessage([A], true, { version: 3n }))),
    ).toMatchObject({
      applied: true,
    });
    expect(keys.lookup("key-a")?.appId).toBe("app-a");
    expect(await g.receive(delta(4n))).toMatchObject({ applied: false, reason: "unknownSigner" });
  });

  it("a delta that skips versions applies and reports a gap; one before any snapshot sets no version", async () => {
    const { keys, g } = gate();
    expect(await g.receive(delta(50n))).toMatchObject({ applied: true, gap: false });
    expect(keys.loaded).toBe(false);
    expect(g.version).toBe(0n);
    expect(await g.receive(snapshot(20n))).toMatchObject({ applied: true });
    expect(keys.lookup(EVIL.key)).toBeUndefined(); // the snapshot replaced it
    expect(await g.receive(delta(25n))).toMatchObject({ applied: true, gap: true });
    expect(keys.lookup(EVIL.key)?.appId).toBe("evil");
    expect(g.version).toBe(25n);
  });

  it("maxKeys: a larger snapshot, or a delta that would grow past it, is refused", async () => {
    const { keys, g } = gate({ maxKeys: 3 });
    expect(
      await g.receive(snapshot(1n, [A, B, EVIL, { key: "k4", state: KeyState.ACTIVE }])),
    ).toMatchObject({
      reason: "tooLarge",
    });
    expect(keys.loaded).toBe(false);
    await g.receive(snapshot(2n, [A, B]));
    const grow = [EVIL, { key: "k4", state: KeyState.ACTIVE }];
    expect(await g.receive(delta(3n, grow))).toMatchObject({ reason: "tooLarge" });
    expect(keys.size).toBe(2);
    // At the cap, a delta that changes or swaps keys still applies.
    const swap = [{ ...A, state: KeyState.DELETED }, EVIL, { ...B, reason: "still unpaid" }];
    expect(await g.receive(delta(3n, swap))).toMatchObject({ applied: true });
    expect(keys.size).toBe(2);
    expect(await g.receive(delta(4n, [{ key: "k5", state: KeyState.ACTIVE }]))).toMatchObject({
      applied: true,
    });
    expect(keys.size).toBe(3);
    expect(g.refused.tooLarge).toBe(2);
  });

  it("maxBytes: a larger payload is refused before it is decoded", async () => {
    const { g } = gate({ maxBytes: 100 });
    expect(await g.receive(new Uint8Array(101))).toMatchObject({ reason: "tooLarge" });
    expect(await g.receive(snapshot(1n, [A]))).toMatchObject({ reason: "tooLarge" }); // ~200 bytes
  });

  it("staleness: the age runs from the signed sentAt (never later than arrival), not refreshed by replays", async () => {
    const { keys, g } = gate({ maxAgeMs: 1000 });
    const now = Date.now();
    const first = snapshot(1n, [A], now - 400);
    await g.receive(first, now);
    expect(keys.usableUntil).toBe(now + 600);
    expect(keys.usable).toBe(true);
    await g.receive(first, now + 500); // the same snapshot again (a replay): no refresh
    expect(keys.usableUntil).toBe(now + 600);
    await g.receive(delta(1n, [A]), now + 500); // a delta at the same version: no refresh
    expect(keys.usableUntil).toBe(now + 600);
    await g.receive(snapshot(2n, [A], now + 10_000), now); // sent "in the future": from its arrival
    expect(keys.usableUntil).toBe(now + 1000);
    await g.receive(delta(9n), now + 800); // a gap: the list may miss an update, no refresh
    expect(keys.usableUntil).toBe(now + 1000);
    await g.receive(snapshot(10n, [A], now - 5000), now); // already stale when it arrives
    expect(keys.loaded).toBe(true);
    expect(keys.usable).toBe(false);
  });

  it("a lost revocation: after a gap no delta refreshes the list, only a snapshot at or above its version", async () => {
    const { keys, g } = gate({ maxAgeMs: 1000 });
    const now = Date.now();
    await g.receive(snapshot(1n, [A, EVIL], now), now);
    // Delta 2 (revoking EVIL) is lost on the way; delta 3 arrives: a gap.
    expect(await g.receive(delta(3n, []), now + 100)).toMatchObject({ applied: true, gap: true });
    expect(g.complete).toBe(false);
    // Contiguous empty deltas, as a backend keeps its services fresh: the list stays incomplete
    // and is not refreshed, so it goes stale at the original bound.
    const fresh4 = signed(keyUpdateMessage([], false, { version: 4n, sentAtMs: now + 900 }));
    expect(await g.receive(fresh4, now + 900)).toMatchObject({ applied: true, gap: true });
    expect(keys.usableUntil).toBe(now + 1000);
    // The last signed snapshot sent again cannot fill the hole: it is older.
    expect(await g.receive(snapshot(1n, [A, EVIL], now + 950), now + 950)).toMatchObject({
      applied: false,
      reason: "replayed",
    });
    expect(keys.lookup(EVIL.key)).toBeDefined();
    // A snapshot at the list's own version completes it (and is then a duplicate).
    const complete = snapshot(4n, [A], now + 1200);
    expect(await g.receive(complete, now + 1200)).toMatchObject({ applied: true, gap: false });
    expect(g.complete).toBe(true);
    expect(keys.lookup(EVIL.key)).toBeUndefined();
    expect(keys.usableUntil).toBe(now + 2200);
    expect(await g.receive(complete, now + 1300)).toMatchObject({
      applied: false,
      reason: "duplicate",
    });
    // And contiguous deltas refresh it again.
    await g.receive(
      signed(keyUpdateMessage([], false, { version: 5n, sentAtMs: now + 1500 })),
      now + 1500,
    );
    expect(keys.usableUntil).toBe(now + 2500);
  });

  it("the signature is checked before the version: a forged replay is badSignature, a genuine one replayed", async () => {
    const { g } = gate();
    const old = snapshot(9n);
    await g.receive(snapshot(10n));
    expect(await g.receive(old)).toMatchObject({ applied: false, reason: "replayed" });
    const forgedOld = toBinary(
      SignedKeyUpdateSchema,
      create(SignedKeyUpdateSchema, {
        keyUpdate: toBinary(KeyUpdateSchema, keyUpdateMessage([EVIL], true, { version: 9n })),
        signature: new Uint8Array(64), // not a valid signature
        signer: testSigner.name,
      }),
    );
    // Nothing in an unverified payload is read before its signature is checked (its version
    // neither: finding it takes a walk over every field, which a forgery can make huge).
    expect(await g.receive(forgedOld)).toMatchObject({ applied: false, reason: "badSignature" });
    const forgedNew = toBinary(
      SignedKeyUpdateSchema,
      create(SignedKeyUpdateSchema, {
        keyUpdate: toBinary(KeyUpdateSchema, keyUpdateMessage([EVIL], true, { version: 11n })),
        signature: new Uint8Array(64),
        signer: testSigner.name,
      }),
    );
    expect(await g.receive(forgedNew)).toMatchObject({ applied: false, reason: "badSignature" });
    // An incomplete list's own version is checked too: a forged snapshot cannot "complete" it.
    await g.receive(delta(12n, []));
    await g.receive(delta(14n, []));
    expect(g.complete).toBe(false);
    const forgedSame = toBinary(
      SignedKeyUpdateSchema,
      create(SignedKeyUpdateSchema, {
        keyUpdate: toBinary(KeyUpdateSchema, keyUpdateMessage([EVIL], true, { version: 14n })),
        signature: new Uint8Array(64),
        signer: testSigner.name,
      }),
    );
    expect(await g.receive(forgedSame)).toMatchObject({ applied: false, reason: "badSignature" });
    expect(g.complete).toBe(false);
  });

  it("duplicated fields: the signed bytes are the decoded bytes, whatever is appended", async () => {
    const { keys, g } = gate();
    const good = snapshot(10n, [A]);
    const evilUpdate = toBinary(KeyUpdateSchema, keyUpdateMessage([EVIL], true, { version: 11n }));
    // A second key_update (field 1) appended after a good envelope: protobuf keeps the last one,
    // for the signature check and the decoding alike.
    const appended = Buffer.concat([
      good,
      toBinary(SignedKeyUpdateSchema, create(SignedKeyUpdateSchema, { keyUpdate: evilUpdate })),
    ]);
    expect(await g.receive(appended)).toMatchObject({ applied: false, reason: "badSignature" });
    // Another signer name appended: the signature no longer matches that signer's key.
    const renamed = Buffer.concat([
      good,
      toBinary(SignedKeyUpdateSchema, create(SignedKeyUpdateSchema, { signer: "someone-else" })),
    ]);
    expect(await g.receive(renamed)).toMatchObject({ applied: false, reason: "unknownSigner" });
    expect(keys.loaded).toBe(false);
    expect(await g.receive(good)).toMatchObject({ applied: true });
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
