import { sign } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, type ConnectError } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type KeyUpdate,
  KeyUpdateSchema,
  SignedKeyUpdateSchema,
} from "../../../../gen/billing/v1/usage_pb.js";
import { type KeyEntry, keyUpdateMessage, testSigner } from "../../../helpers/fixtures.js";
import { active, errorOf, say, startRulesWorld } from "../../../helpers/rules-world.js";
import { sleep } from "../../../helpers/time.js";

// One key's rules that the client cannot enforce fail closed for that key only; the rest of the
// signed update (a block of another key above all) takes effect.

/** Signed by the trusted signer without signKeyUpdate's checks (a backend in another language). */
function signedAsIs(
  keys: KeyEntry[],
  snapshot: boolean,
  edit: (u: KeyUpdate) => void = () => {},
): Uint8Array {
  const u = keyUpdateMessage(keys, snapshot);
  edit(u);
  const keyUpdate = toBinary(KeyUpdateSchema, u);
  const signature = sign(null, keyUpdate, testSigner.privateKey);
  return toBinary(
    SignedKeyUpdateSchema,
    create(SignedKeyUpdateSchema, { keyUpdate, signature, signer: testSigner.name }),
  );
}

let w: Awaited<ReturnType<typeof startRulesWorld>>;
beforeAll(async () => {
  w = await startRulesWorld();
});
afterAll(async () => {
  await w?.close();
});

describe("a signed update with one key's rules out of range", () => {
  it("blocks A, fails closed for B (limit 0), lets C in, over Connect and gRPC", async () => {
    await w.pushKeys(true, [active("f2-a"), active("f2-b"), active("f2-c")]);
    const before = w.billing.stats();
    await w.broker.publish(
      "billing/keys/update",
      signedAsIs(
        [
          { key: "f2-a", state: 2, reason: "revoked" }, // KeyState.BLOCKED
          active("f2-b", { rateLimits: [{ limit: 0, windowSeconds: 60 }] }),
          active("f2-c", { rateLimits: [{ limit: 5, windowSeconds: 60 }] }),
        ],
        false,
      ),
    );
    const deadline = Date.now() + 5000;
    while (w.billing.stats().keyUpdates === before.keyUpdates && Date.now() < deadline) {
      await sleep(20);
    }
    const after = w.billing.stats();
    expect(after.keyUpdates).toBe(before.keyUpdates + 1);
    expect(after.keyUpdatesRefused.invalid).toBe(before.keyUpdatesRefused.invalid);
    expect(after.keysInvalidRules).toBe(before.keysInvalidRules + 1);
    for (const t of [
      createConnectTransport({ baseUrl: w.server.url, httpVersion: "2" }),
      createGrpcTransport({ baseUrl: w.server.url }),
    ]) {
      const a = (await errorOf(say(t, "f2-a"))) as ConnectError;
      expect([a.code, a.rawMessage]).toEqual([Code.PermissionDenied, "API key blocked: revoked"]);
      const b = (await errorOf(say(t, "f2-b"))) as ConnectError;
      expect([b.code, b.rawMessage]).toEqual([
        Code.PermissionDenied,
        "API key blocked: invalid rules",
      ]);
      expect(await errorOf(say(t, "f2-c"))).toBe("ok");
    }
  });

  it("clamps a limit up to 2^64-1 to 2^53-1 instead of refusing the update", async () => {
    const before = w.billing.stats();
    await w.broker.publish(
      "billing/keys/update",
      signedAsIs(
        [
          { key: "f2-d", state: 2, reason: "revoked" },
          active("f2-e", { rateLimits: [{ limit: 1, windowSeconds: 1 }] }),
        ],
        false,
        (u) => {
          (u.keys[1]?.rateLimits[0] as { limit: bigint }).limit = 2n ** 64n - 1n;
        },
      ),
    );
    const deadline = Date.now() + 5000;
    while (w.billing.stats().keyUpdates === before.keyUpdates && Date.now() < deadline) {
      await sleep(20);
    }
    expect(w.billing.stats().keyUpdates).toBe(before.keyUpdates + 1);
    expect(w.billing.stats().keysInvalidRules).toBe(before.keysInvalidRules);
    const t = createConnectTransport({ baseUrl: w.server.url, httpVersion: "2" });
    expect(((await errorOf(say(t, "f2-d"))) as ConnectError).code).toBe(Code.PermissionDenied);
    expect(await errorOf(say(t, "f2-e"))).toBe("ok");
  });
});
