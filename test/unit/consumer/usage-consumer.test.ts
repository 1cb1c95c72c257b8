import { describe, expect, it } from "vitest";
import {
  createUsageConsumer,
  type RejectedRecord,
  type UsageConsumerOptions,
} from "../../../src/consumer/index.js";
import { AedesBroker } from "../../helpers/aedes-broker.js";
import { makePki } from "../../helpers/certs.js";
import { usageRecord, useConsumerBroker } from "../../helpers/consumer-fixture.js";
import { batchPayload } from "../../helpers/fixtures.js";
import { freePort } from "../../helpers/mosquitto.js";
import { sleep, waitUntil } from "../../helpers/time.js";

// createUsageConsumer against an embedded Aedes (see test/helpers/consumer-fixture.ts).
const suite = useConsumerBroker();
const { logs, consumer, publish, nextPrefix } = suite;
const record = usageRecord;

describe("createUsageConsumer: nothing is lost", () => {
  it("a record whose onRecord threw is tried again; the producer's resend is a duplicate only once handled", async () => {
    const p = nextPrefix();
    const calls: string[] = [];
    const handled: string[] = [];
    const c = consumer(
      {
        onRecord: (r) => {
          calls.push(r.id);
          if (calls.length === 1) throw new Error("database hiccup");
          handled.push(r.id);
        },
      },
      p,
    );
    await c.ready;
    const r = record();
    await publish(p, batchPayload(r));
    await publish(p, batchPayload(r)); // the producer's resend, same id
    await waitUntil(
      () => c.stats().pending === 0 && c.stats().received === 2,
      5000,
      "both handled",
    );
    expect(handled).toEqual([r.id]);
    expect(c.stats()).toMatchObject({ received: 2, handled: 1, failed: 1, duplicates: 1 });
    expect(logs.join("\n")).toMatch(/onRecord for record .* failed \(attempt 1\): database hiccup/);
  });

  it("acknowledges a message only once handled: closed before that, it is delivered again", async () => {
    const p = nextPrefix();
    const first = consumer({ onRecord: () => new Promise<void>(() => {}), closeTimeoutMs: 0 }, p);
    await first.ready;
    const r = record();
    await publish(p, batchPayload(r));
    await waitUntil(() => first.stats().received === 1, 5000, "received");
    await first.close(); // never handled: left unacknowledged
    const again: string[] = [];
    const second = consumer({ onRecord: (x) => void again.push(x.id) }, p);
    await second.ready;
    await waitUntil(() => again.length === 1, 5000, "delivered again");
    expect(again).toEqual([r.id]);
    // Handled and acknowledged now: a third session gets nothing.
    await waitUntil(() => second.stats().pending === 0, 5000, "handled");
    await second.close();
    const none: string[] = [];
    const third = consumer({ onRecord: (x) => void none.push(x.id) }, p);
    await third.ready;
    await sleep(200);
    expect(none).toEqual([]);
  });

  it("keeps a persistent session: records published while it was down arrive when it is back", async () => {
    const p = nextPrefix();
    const first = consumer({ onRecord: () => {} }, p);
    await first.ready;
    await first.close();
    const sent = [record(), record(), record()];
    for (const r of sent) await publish(p, batchPayload(r));
    const got: string[] = [];
    const back = consumer({ onRecord: (r) => void got.push(r.id) }, p);
    await back.ready;
    await waitUntil(() => got.length === 3, 5000, "3 records after the restart");
    expect(got.sort()).toEqual(sent.map((r) => r.id).sort());
  });

  it("handles a record published at QoS 0", async () => {
    const p = nextPrefix();
    const got: string[] = [];
    const c = consumer({ onRecord: (r) => void got.push(r.id) }, p);
    await c.ready;
    const r = record();
    await publish(p, batchPayload(r), 0);
    await waitUntil(() => got.length === 1, 5000, "the QoS 0 record");
    expect(got).toEqual([r.id]);
    expect(c.stats()).toMatchObject({ received: 1, handled: 1, pending: 0 });
  });

  it("an onRecord that never settles holds one slot until handlerTimeoutMs; the others go on", async () => {
    const p = nextPrefix();
    const stuck = record({ model: "stuck" });
    const order: string[] = [];
    let stuckCalls = 0;
    const c = consumer(
      {
        handlerTimeoutMs: 300,
        onRecord: (r) => {
          if (r.id === stuck.id && ++stuckCalls === 1) return new Promise<void>(() => {});
          order.push(r.model);
        },
      },
      p,
    );
    await c.ready;
    await publish(p, batchPayload(stuck));
    const others = Array.from({ length: 20 }, () => record());
    for (const r of others) await publish(p, batchPayload(r));
    await waitUntil(() => order.length === 21, 5000, "all 21 records");
    expect(order.indexOf("stuck")).toBe(20); // after every other one
    expect(stuckCalls).toBe(2);
    expect(c.stats()).toMatchObject({ handled: 21, failed: 1, pending: 0 });
    expect(logs.join("\n")).toMatch(/onRecord\(.*\): no answer after 300 ms/);
  });

  it("runs at most `concurrency` onRecord calls at once", async () => {
    const p = nextPrefix();
    let running = 0;
    let most = 0;
    const c = consumer(
      {
        concurrency: 3,
        onRecord: async () => {
          most = Math.max(most, ++running);
          await sleep(10);
          running--;
        },
      },
      p,
    );
    await c.ready;
    // 10 messages of 3 records each.
    for (let i = 0; i < 10; i++) await publish(p, batchPayload(record(), record(), record()));
    await waitUntil(() => c.stats().handled === 30, 5000, "30 records");
    expect(most).toBe(3);
  });
});

describe("createUsageConsumer: validation", () => {
  it("rejects what cannot be billed (counted, passed to onRejected, acknowledged); good records of the same message go on", async () => {
    const p = nextPrefix();
    const rejected: RejectedRecord[] = [];
    const handled: string[] = [];
    const c = consumer(
      { onRecord: (r) => void handled.push(r.id), onRejected: (x) => void rejected.push(x) },
      p,
    );
    await c.ready;
    const good = record();
    const noTime = record();
    noTime.occurredAt = undefined;
    await publish(p, new Uint8Array(0)); // 0 bytes: a batch of nothing
    await publish(p, Buffer.from([0xff, 0xff])); // not protobuf
    await publish(
      p,
      batchPayload(
        record({ id: "" }),
        record({ id: "not-a-uuid" }),
        record({ id: "00000000-0000-0000-0000-000000000000" }),
        record({ apiKeySha256: "abc" }),
        record({ module: "" }),
        record({ model: "gpt\u202e4" }),
        record({ metadata: { note: "a\u0000b" } }),
        noTime,
        good,
      ),
    );
    await waitUntil(() => c.stats().pending === 0 && c.stats().received === 3, 5000, "3 messages");
    expect(handled).toEqual([good.id]);
    expect(rejected.map((r) => r.reason)).toEqual([
      "the message holds no record",
      "the message is not a billing.v1.UsageBatch",
      "id: must be a lowercase hyphenated UUID, not empty or nil",
      "id: must be a lowercase hyphenated UUID, not empty or nil",
      "id: must be a lowercase hyphenated UUID, not empty or nil",
      "apiKeySha256: must be 64 lowercase hex characters",
      "module: must not be empty",
      "model: must not contain invisible format characters (bidirectional controls, zero-width characters, a BOM) or line separators",
      "metadata.note: a string must not contain U+0000 (NUL)",
      "occurredAt: missing",
    ]);
    expect(rejected[3]?.recordId).toBe("not-a-uuid");
    expect([...(rejected[1]?.payload ?? [])]).toEqual([0xff, 0xff]);
    expect(c.stats()).toMatchObject({ received: 3, records: 1, handled: 1, rejected: 10 });
    // Acknowledged: the next session of this consumer gets none of it again.
    await c.close();
    const again: string[] = [];
    const next = consumer({ onRecord: (r) => void again.push(r.id), onRejected: () => {} }, p);
    await next.ready;
    await sleep(200);
    expect(next.stats().received).toBe(0);
  });

  it("logs rejections when no onRejected is given", async () => {
    const p = nextPrefix();
    const c = consumer({ onRecord: () => {} }, p);
    await c.ready;
    await publish(p, batchPayload(record({ apiKeySha256: "A".repeat(64) })));
    await waitUntil(() => c.stats().rejected === 1, 5000, "rejected");
    expect(logs.join("\n")).toMatch(/warn: rejected a record that cannot be billed: apiKeySha256/);
  });
});

describe("createUsageConsumer: ready and options", () => {
  it("falls back to MQTT 3.1.1 on a broker without MQTT 5 (no shared subscription there)", async () => {
    const p = nextPrefix();
    const c = consumer({ onRecord: () => {}, group: "g1" }, p);
    await c.ready;
    expect(c.stats()).toMatchObject({ connected: true, protocolVersion: 4 });
    expect(logs.join("\n")).toMatch(/MQTT 3.1.1: no shared subscription/);
  });

  it("ready rejects with a BillingError on a permanent failure, and the consumer stops", async () => {
    const p = nextPrefix();
    const wrongCa = consumer({ onRecord: () => {}, ca: makePki().ca }, p);
    await expect(wrongCa.ready).rejects.toMatchObject({ name: "BillingError", code: "TLS" });
    const wrongPassword = consumer({ onRecord: () => {}, password: "nope" }, p);
    await expect(wrongPassword.ready).rejects.toMatchObject({ code: "NOT_AUTHORIZED" });
    const closedPort = consumer({ onRecord: () => {}, brokerPort: await freePort() }, p);
    await expect(closedPort.ready).rejects.toMatchObject({ code: "UNREACHABLE" });
    // Tries each broker of the list once before giving up.
    const fallback = consumer(
      {
        onRecord: () => {},
        brokerPort: await freePort(),
        fallbackBrokers: [{ host: "127.0.0.1", port: suite.broker.port }],
      },
      p,
    );
    await fallback.ready;
    await waitUntil(() => wrongCa.stats().connected === false, 1000, "stopped");
  });

  it("ready rejects NOT_AUTHORIZED when the broker refuses the subscription", async () => {
    const refusing = await AedesBroker.create({ refuseSubscribe: (f) => f === "denied/report" });
    try {
      const c = consumer({ onRecord: () => {}, brokerPort: refusing.port, tls: false }, "denied");
      await expect(c.ready).rejects.toMatchObject({
        code: "NOT_AUTHORIZED",
        message: expect.stringMatching(/refused the subscription to denied\/report/),
      });
    } finally {
      await refusing.close();
    }
  });

  it("close before the connection is up rejects ready with CLOSED", async () => {
    const c = consumer({ onRecord: () => {} }, nextPrefix());
    await c.close();
    await expect(c.ready).rejects.toMatchObject({ code: "CLOSED" });
    await c.close(); // again: the same promise
  });

  it("refuses bad options with INVALID_ARGUMENT naming the field", () => {
    const base = { brokerHost: "127.0.0.1", tls: false };
    const bad: Array<[Partial<UsageConsumerOptions>, string]> = [
      [{}, "onRecord"],
      [{ onRecord: () => {}, store: { write: async () => ({ inserted: 0 }) } }, "onRecord"],
      [{ onRecord: "no" as never }, "onRecord"],
      [{ store: {} as never }, "store"],
      [{ onRecord: () => {}, onRejected: 1 as never }, "onRejected"],
      [{ onRecord: () => {}, group: "a/b" }, "group"],
      [{ onRecord: () => {}, group: "" }, "group"],
      [{ onRecord: () => {}, concurrency: 0 }, "concurrency"],
      [{ onRecord: () => {}, maxPendingMessages: 70_000 }, "maxPendingMessages"],
      [{ onRecord: () => {}, sessionExpirySeconds: -1 }, "sessionExpirySeconds"],
      [{ onRecord: () => {}, dedupeWindow: 1.5 }, "dedupeWindow"],
      [{ onRecord: () => {}, clientId: "a\nb" }, "clientId"],
    ];
    for (const [extra, field] of bad) {
      expect(
        () => createUsageConsumer({ ...base, ...extra } as UsageConsumerOptions),
        field,
      ).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT", field }));
    }
  });
});
