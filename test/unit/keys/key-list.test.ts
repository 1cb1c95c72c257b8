import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { KeyState, KeyStatusSchema, KeyUpdateSchema } from "../../../gen/billing/v1/usage_pb.js";
import { hashApiKey } from "../../../src/common/api-key-hash.js";
import { KeyList } from "../../../src/keys/key-list.js";

describe("KeyList", () => {
  const status = (key: string, state: KeyState, appId = "app", reason = "") =>
    create(KeyStatusSchema, { apiKeySha256: hashApiKey(key), state, appId, reason });

  it("is not loaded until a snapshot; a delta before it does not load it", () => {
    const list = new KeyList();
    list.apply(create(KeyUpdateSchema, { keys: [status("a", KeyState.ACTIVE)] }));
    expect(list.loaded).toBe(false);
    expect(list.lookup("a")?.state).toBe(KeyState.ACTIVE);
    list.apply(create(KeyUpdateSchema, { snapshot: true, keys: [status("b", KeyState.ACTIVE)] }));
    expect(list.loaded).toBe(true);
    expect(list.lookup("a")).toBeUndefined();
    expect(list.size).toBe(1);
  });

  it("applies deltas: add, block, delete; reports changes; survives a throwing listener", () => {
    const list = new KeyList(() => errors.push("listener threw"));
    const errors: string[] = [];
    const seen: string[] = [];
    list.onChange(() => {
      throw new Error("boom");
    });
    const off = list.onChange((changes) => seen.push(...changes.map((c) => c.apiKeySha256)));
    list.apply(
      create(KeyUpdateSchema, {
        snapshot: true,
        keys: [status("a", KeyState.ACTIVE, "app-a"), status("b", KeyState.ACTIVE)],
      }),
    );
    list.apply(
      create(KeyUpdateSchema, {
        keys: [status("a", KeyState.BLOCKED, "app-a", "unpaid"), status("b", KeyState.DELETED)],
      }),
    );
    expect(list.lookup("a")).toEqual({ state: KeyState.BLOCKED, appId: "app-a", reason: "unpaid" });
    expect(list.lookup("b")).toBeUndefined();
    expect(errors).toEqual(["listener threw", "listener threw"]);
    expect(seen).toContain(hashApiKey("b"));
    off();
    list.apply(create(KeyUpdateSchema, { keys: [status("c", KeyState.ACTIVE)] }));
    expect(seen).not.toContain(hashApiKey("c"));
  });

  it("a snapshot reports the keys it dropped", () => {
    const list = new KeyList();
    list.apply(create(KeyUpdateSchema, { snapshot: true, keys: [status("a", KeyState.ACTIVE)] }));
    const changes = list.apply(create(KeyUpdateSchema, { snapshot: true, keys: [] }));
    expect(changes).toEqual([{ apiKeySha256: hashApiKey("a"), info: undefined }]);
  });
});
