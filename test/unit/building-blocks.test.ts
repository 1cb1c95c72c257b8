import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { KeyState, KeyStatusSchema, KeyUpdateSchema } from "../../gen/billing/v1/usage_pb.js";
import { BillingError } from "../../src/billing-error.js";
import { hashApiKey } from "../../src/common/api-key-hash.js";
import { KeyList } from "../../src/keys/key-list.js";
import { toBillingError } from "../../src/mqtt/to-billing-error.js";
import { uuidV7 } from "../../src/protocol/uuid-v7.js";
import { resolveOptions } from "../../src/publisher/client/options.js";
import { sameOptions } from "../../src/publisher/client/same-options.js";
import type { PendingRecord } from "../../src/publisher/pending-record.js";
import { RecordQueue } from "../../src/publisher/pipeline/record-queue.js";

describe("uuidV7", () => {
  it("is an RFC 9562 version 7 UUID carrying the time", () => {
    const now = Date.UTC(2026, 10, 27, 3, 0, 0, 123);
    const id = uuidV7(now);
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(Number.parseInt(id.slice(0, 8) + id.slice(9, 13), 16)).toBe(now);
  });

  it("is strictly increasing, also within one millisecond and past the counter's range", () => {
    const ids = Array.from({ length: 10_000 }, () => uuidV7(1_800_000_000_000));
    for (let i = 1; i < ids.length; i++)
      expect((ids[i] as string) > (ids[i - 1] as string)).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("stays increasing when the clock steps back", () => {
    const a = uuidV7(1_900_000_000_000);
    const b = uuidV7(1_899_999_999_000);
    expect(b > a).toBe(true);
  });
});

describe("hashApiKey", () => {
  it("is the lowercase hex SHA-256", () => {
    expect(hashApiKey("test")).toBe(
      "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    );
    for (let i = 0; i < 5000; i++) hashApiKey(`k${i}`); // past the cache bound
    expect(hashApiKey("test")).toMatch(/^9f86d0/);
  });
});

describe("RecordQueue", () => {
  const rec = (seq: number): PendingRecord => ({
    seq,
    id: `id${seq}`,
    bytes: Buffer.alloc(0),
    attempts: 0,
    losses: 0,
  });

  it("is FIFO and merges records put back in seq order", () => {
    const q = new RecordQueue();
    for (let i = 0; i < 10_000; i++) q.push(rec(i));
    const taken = Array.from({ length: 5000 }, () => q.shift() as PendingRecord);
    expect(taken.map((r) => r.seq)).toEqual(Array.from({ length: 5000 }, (_, i) => i));
    for (const r of [taken[4], taken[0], taken[2]] as PendingRecord[]) q.putBack(r);
    expect(q.length).toBe(5003);
    expect(q.peek()?.seq).toBe(0);
    const out: number[] = [];
    for (let r = q.shift(); r !== undefined; r = q.shift()) out.push(r.seq);
    expect(out.slice(0, 4)).toEqual([0, 2, 4, 5000]);
    expect(out.length).toBe(5003);
    expect(q.shift()).toBeUndefined();
  });
});

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

describe("options", () => {
  it("fills defaults in one place", () => {
    const o = resolveOptions({});
    expect(o).toMatchObject({
      brokerHost: "localhost",
      brokerPort: 8883,
      tls: true,
      dangerouslyDisableTlsVerification: false,
      topicPrefix: "billing",
      protocolVersion: 5,
      maxQueued: 100_000,
      heartbeatIntervalMs: 10_000,
    });
    expect(o.clientId).toMatch(/^billing-.+-[0-9a-f]{8}$/);
    expect(resolveOptions({ tls: false }).brokerPort).toBe(1883);
  });

  for (const [name, bad] of [
    ["brokerHost", { brokerHost: "" }],
    ["brokerPort", { brokerPort: 70000 }],
    ["brokerPort", { brokerPort: 1.5 }],
    ["protocolVersion", { protocolVersion: 3 }],
    ["clientId", { clientId: "" }],
    ["topicPrefix", { topicPrefix: "billing/#" }],
    ["topicPrefix", { topicPrefix: "a//b" }],
    ["maxQueued", { maxQueued: 0 }],
    ["inFlightWindow", { inFlightWindow: 70000 }],
    ["heartbeatIntervalMs", { heartbeatIntervalMs: -1 }],
    ["cert", { cert: "x" }],
  ] as const) {
    it(`refuses a bad ${name}: ${JSON.stringify(bad)}`, () => {
      const err = (() => {
        try {
          resolveOptions(bad as never);
        } catch (e) {
          return e as BillingError;
        }
      })();
      expect(err).toBeInstanceOf(BillingError);
      expect(err?.code).toBe("INVALID_ARGUMENT");
      expect(err?.field).toBe(name);
    });
  }

  it("compares options with defaults applied", () => {
    expect(sameOptions({}, { brokerHost: "localhost", tls: true })).toBe(true);
    const pem = (s: string) => `-----BEGIN CERTIFICATE-----\n${s}\n-----END CERTIFICATE-----\n`;
    expect(sameOptions({ ca: Buffer.from(pem("x")) }, { ca: Buffer.from(pem("x")) })).toBe(true);
    expect(sameOptions({ ca: [pem("a")] }, { ca: [pem("a"), pem("b")] })).toBe(false);
    expect(sameOptions({}, { brokerPort: 1 })).toBe(false);
    expect(sameOptions({ clientId: "a" }, {})).toBe(false);
    expect(sameOptions({ logger: () => {} }, { logger: () => {} })).toBe(false);
  });
});

describe("toBillingError", () => {
  const code = (err: unknown) => toBillingError(err, "broker").code;
  it("maps connection failures to codes", () => {
    expect(code(Object.assign(new Error("x"), { code: 5 }))).toBe("NOT_AUTHORIZED");
    expect(code(Object.assign(new Error("x"), { code: 135 }))).toBe("NOT_AUTHORIZED");
    expect(code(Object.assign(new Error("x"), { code: 2 }))).toBe("PROTOCOL");
    expect(code(Object.assign(new Error("x"), { code: "ECONNREFUSED" }))).toBe("UNREACHABLE");
    expect(code(Object.assign(new Error("x"), { code: "SELF_SIGNED_CERT_IN_CHAIN" }))).toBe("TLS");
    expect(code(Object.assign(new Error("x"), { code: "ERR_TLS_CERT_ALTNAME_INVALID" }))).toBe(
      "TLS",
    );
    expect(code(Object.assign(new Error("x"), { code: "EPROTO" }))).toBe("TLS");
    expect(code(new Error("TLS not authorized"))).toBe("TLS");
    expect(code("weird")).toBe("UNREACHABLE");
    const be = new BillingError("TIMEOUT", "t");
    expect(toBillingError(be, "b")).toBe(be);
  });
});
