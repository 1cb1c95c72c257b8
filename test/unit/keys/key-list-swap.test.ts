import { describe, expect, it } from "vitest";
import { KeyState } from "../../../gen/billing/v1/usage_pb.js";
import { hashApiKey } from "../../../src/common/api-key-hash.js";
import { decodedEntries } from "../../../src/keys/key-entries.js";
import { KeyList } from "../../../src/keys/key-list.js";
import { SnapshotBuild } from "../../../src/keys/key-list-builds.js";
import type { KeyRules } from "../../../src/keys/key-rules.js";
import { admitCall } from "../../../src/keys/rule-check.js";
import { atOnce } from "../../../src/keys/time-slices.js";
import { type KeyEntry, keyUpdateMessage } from "../../helpers/fixtures.js";

// A large update is built beside the list and swapped in whole; calls made meanwhile use the old
// entries. A key whose limits stay keeps its rate-limit state across the swap, also when its
// bucket was first made while the new list was being built.
const LIMITED: KeyEntry = {
  key: "limited-key",
  state: KeyState.ACTIVE,
  appId: "app",
  rateLimits: [{ limit: 3, windowSeconds: 60 }],
};
const OTHER: KeyEntry = { key: "other-key", state: KeyState.ACTIVE, appId: "app" };
const H = hashApiKey(LIMITED.key);
const METHOD = "test.v1.EchoService/Say";
const call = (list: KeyList) => admitCall(list.rulesOf(H) as KeyRules, METHOD, undefined);

/** The next list for `keys`, built beside `list` (not swapped in yet). */
function builtBeside(list: KeyList, keys: KeyEntry[]) {
  const build = new SnapshotBuild(
    decodedEntries(keyUpdateMessage(keys, true), list.countInvalid),
    false,
    false,
  );
  atOnce(build.step);
  return build.next;
}

describe("swapping in a list built beside", () => {
  it("carries a bucket first made while the new list was built to the new entry at its first lookup", () => {
    const list = new KeyList();
    list.apply(keyUpdateMessage([LIMITED, OTHER], true));
    const next = builtBeside(list, [LIMITED, OTHER]);
    for (let i = 0; i < 3; i++) expect(call(list)).toBeUndefined(); // the old entry's bucket
    expect(call(list)?.outcome).toBe("rate_limited");
    list.swap(next);
    expect(list.lookupHash(H)).toBe(next.get(H)); // the new entry...
    expect(call(list)?.outcome).toBe("rate_limited"); // ...with the bucket as it was: no refill
  });

  it("or by the pass after the swap, before any lookup", () => {
    const list = new KeyList();
    list.apply(keyUpdateMessage([LIMITED, OTHER], true));
    const next = builtBeside(list, [LIMITED]);
    for (let i = 0; i < 3; i++) call(list);
    list.swap(next);
    const removed: string[] = [];
    atOnce((d) => list.settle(d, (h) => removed.push(h)));
    expect(removed).toEqual([hashApiKey(OTHER.key)]);
    expect(next.get(H)?.rules?.buckets).toBeDefined();
    expect(call(list)?.outcome).toBe("rate_limited");
  });

  it("a key whose limits changed starts afresh", () => {
    const list = new KeyList();
    list.apply(keyUpdateMessage([LIMITED], true));
    const next = builtBeside(list, [{ ...LIMITED, rateLimits: [{ limit: 5, windowSeconds: 60 }] }]);
    for (let i = 0; i < 3; i++) call(list);
    list.swap(next);
    for (let i = 0; i < 5; i++) expect(call(list)).toBeUndefined();
    expect(call(list)?.outcome).toBe("rate_limited");
  });
});
