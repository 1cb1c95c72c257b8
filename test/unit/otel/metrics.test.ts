import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { Histogram } from "@opentelemetry/sdk-metrics";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type ApiKeyDecision, BillingClient, KeyState, requireApiKey } from "../../../src/index.js";
import { instrumentClient, instrumentDecisions } from "../../../src/otel/index.js";
import { EchoService } from "../../gen/test/v1/echo_pb.js";
import { startEchoServer } from "../../helpers/echo-server.js";
import { useEmbeddedBroker } from "../../helpers/embedded-broker.js";
import { keyUpdate } from "../../helpers/fixtures.js";
import { metricValue, testMeterProvider } from "../../helpers/metrics-reader.js";
import { sleep, waitUntil } from "../../helpers/time.js";

// billing-sdk/otel against a real SDK MeterProvider and an embedded broker: each instrument
// moves as the behaviour it measures happens.
let deaf = false; // the broker stops answering usage PUBLISHes (no PUBACK) while true
const suite = useEmbeddedBroker({ ignorePublish: (topic) => deaf && topic === "billing/report" });
let otel: ReturnType<typeof testMeterProvider>;
beforeAll(() => {
  otel = testMeterProvider();
});
afterAll(async () => otel.shutdown());
afterEach(() => {
  deaf = false;
});
const usage = (i: number) => ({ apiKey: "key-1", module: "llm", model: "m", usage: i });

describe("instrumentClient", () => {
  it("publisher: accepted, published, refused by reason, queued and in flight, connection and reconnects", async () => {
    const client = new BillingClient(suite.options());
    const metrics = instrumentClient(client, { meterProvider: otel.meterProvider });
    try {
      await client.connect();
      let c = await otel.collect();
      expect(metricValue(c, "billing.publisher.connection.up")).toBe(1);
      expect(metricValue(c, "billing.publisher.accepted.records")).toBe(0);
      expect(c.get("billing.publisher.accepted.records")?.unit).toBe("{record}");

      for (let i = 0; i < 5; i++) await client.reportUsage(usage(i));
      await client.flush();
      await expect(client.reportUsage({ ...usage(0), module: "" })).rejects.toThrow();
      c = await otel.collect();
      expect(metricValue(c, "billing.publisher.accepted.records")).toBe(5);
      expect(metricValue(c, "billing.publisher.published.records")).toBe(5);
      expect(metricValue(c, "billing.publisher.queue.count")).toBe(0);
      expect(
        metricValue(c, "billing.publisher.refused.records", {
          "billing.refusal.reason": "INVALID_ARGUMENT",
        }),
      ).toBe(1);

      // The broker goes deaf: records stay in flight, waiting for their PUBACK.
      deaf = true;
      for (let i = 0; i < 3; i++) await client.reportUsage(usage(i));
      await waitUntil(() => client.stats().inFlight === 3, 5000, "3 in flight");
      c = await otel.collect();
      expect(metricValue(c, "billing.publisher.in_flight.count")).toBe(3);
      expect(metricValue(c, "billing.publisher.queue.count")).toBe(3);
      expect(metricValue(c, "billing.publisher.queue.size")).toBeGreaterThan(0);
      expect(metricValue(c, "billing.publisher.accepted.records")).toBe(8);

      // The broker goes down: the attempts are cut off (failed), records stay queued.
      await suite.broker.stop();
      deaf = false;
      await waitUntil(() => !client.isConnected(), 5000, "disconnected");
      await client.reportUsage(usage(9));
      c = await otel.collect();
      expect(metricValue(c, "billing.publisher.connection.up")).toBe(0);
      expect(metricValue(c, "billing.publisher.queue.count")).toBe(4);
      expect(metricValue(c, "billing.publisher.in_flight.count")).toBe(0);
      expect(metricValue(c, "billing.publisher.failed.attempts")).toBe(3);

      await suite.broker.start();
      await client.flush(10_000);
      c = await otel.collect();
      expect(metricValue(c, "billing.publisher.connection.up")).toBe(1);
      expect(metricValue(c, "billing.publisher.reconnects")).toBe(1);
      expect(metricValue(c, "billing.publisher.published.records")).toBe(9);
      expect(metricValue(c, "billing.publisher.queue.count")).toBe(0);

      // After stop(), the callback is gone: the SDK repeats the last cumulative value it saw,
      // and nothing new is read from the client.
      metrics.stop();
      metrics.stop();
      await client.reportUsage(usage(10));
      c = await otel.collect();
      expect(client.stats().published + client.stats().queued).toBe(10);
      expect(metricValue(c, "billing.publisher.accepted.records") ?? 9).toBe(9);
    } finally {
      metrics.stop();
      await client.close(1000).catch(() => {});
    }
  });

  it("key sync: keys known, age of the list, updates applied and refused by reason", async () => {
    const client = new BillingClient(suite.options());
    const metrics = instrumentClient(client, { meterProvider: otel.meterProvider });
    try {
      await client.connect();
      await waitUntil(
        () => suite.broker.payloads("billing/keys/request").length > 0,
        5000,
        "subscribed",
      );
      let c = await otel.collect();
      expect(metricValue(c, "billing.key_list.key.count")).toBe(0);
      expect(metricValue(c, "billing.key_list.age")).toBeUndefined(); // no list yet
      expect(
        metricValue(c, "billing.key_list.refused.updates", {
          "billing.refusal.reason": "badSignature",
        }),
      ).toBe(0);

      const keys = [1, 2, 3].map((i) => ({ key: `key-${i}`, state: KeyState.ACTIVE }));
      await suite.broker.publish("billing/keys/update", keyUpdate(keys, true));
      await waitUntil(() => client.stats().keyUpdates === 1, 5000, "snapshot applied");
      await suite.broker.publish("billing/keys/update", Buffer.from([0xff, 0x01]));
      await waitUntil(() => client.stats().keyUpdatesRefused.undecodable === 1, 5000, "refused");
      await sleep(50);
      c = await otel.collect();
      expect(metricValue(c, "billing.key_list.key.count")).toBe(3);
      expect(metricValue(c, "billing.key_list.applied.updates")).toBe(1);
      expect(
        metricValue(c, "billing.key_list.refused.updates", {
          "billing.refusal.reason": "undecodable",
        }),
      ).toBe(1);
      expect(metricValue(c, "billing.key_list.stale")).toBe(0);
      const age = metricValue(c, "billing.key_list.age") as number;
      expect(age).toBeGreaterThanOrEqual(0.04);
      expect(age).toBeLessThan(5);
      expect(c.get("billing.key_list.age")?.unit).toBe("s");

      // A snapshot sent an hour ago that arrives now: the list is an hour old (as
      // maxKeyListAgeMs counts it), not as old as its arrival.
      const hourAgo = Date.now() - 3_600_000;
      await suite.broker.publish(
        "billing/keys/update",
        keyUpdate(keys, true, { sentAtMs: hourAgo }),
      );
      await waitUntil(() => client.stats().keyUpdates === 2, 5000, "old snapshot applied");
      expect(client.stats().keysAgeMs).toBeGreaterThanOrEqual(3_600_000);
      c = await otel.collect();
      expect(metricValue(c, "billing.key_list.age") as number).toBeGreaterThanOrEqual(3600);
    } finally {
      metrics.stop();
      await client.close(1000).catch(() => {});
    }
  });
});

describe("instrumentDecisions", () => {
  it("counts decisions by outcome and method and times them, on a real Connect server", async () => {
    const client = new BillingClient(suite.options());
    const seen: string[] = [];
    const decisions = instrumentDecisions({
      meterProvider: otel.meterProvider,
      onDecision: (d) => seen.push(d.outcome),
      durationAttributes: "all",
    });
    const server = await startEchoServer([
      requireApiKey({
        client,
        onDecision: decisions.onDecision,
        exempt: ["test.v1.EchoService/Health"],
      }),
    ]);
    try {
      await client.connect();
      await waitUntil(
        () => suite.broker.payloads("billing/keys/request").length > 0,
        5000,
        "subscribed",
      );
      const keys = [
        { key: "good", state: KeyState.ACTIVE },
        { key: "bad", state: KeyState.BLOCKED, reason: "unpaid" },
      ];
      await suite.broker.publish("billing/keys/update", keyUpdate(keys, true));
      await waitUntil(() => client.keys.usable, 5000, "keys loaded");
      const echo = createClient(
        EchoService,
        createConnectTransport({ baseUrl: server.url, httpVersion: "2" }),
      );
      const call = (key?: string) =>
        echo.say({ text: "hi" }, { headers: key === undefined ? {} : { "api-key": key } }).then(
          () => "ok",
          () => "refused",
        );
      expect(await call("good")).toBe("ok");
      expect(await call("good")).toBe("ok");
      expect(await call()).toBe("refused");
      expect(await call("bad")).toBe("refused");
      expect(await call("unknown")).toBe("refused");
      await echo.health({});
      const c = await otel.collect();
      const say = { "rpc.method": "test.v1.EchoService/Say" };
      const count = (outcome: string) =>
        metricValue(c, "billing.interceptor.decisions", {
          ...say,
          "billing.decision.outcome": outcome,
        });
      expect(count("allowed")).toBe(2);
      expect(count("missing")).toBe(1);
      expect(count("blocked")).toBe(1);
      expect(count("invalid")).toBe(1);
      expect(
        metricValue(c, "billing.interceptor.decisions", {
          "rpc.method": "test.v1.EchoService/Health",
          "billing.decision.outcome": "exempt",
        }),
      ).toBe(1);
      const hist = c.get("billing.interceptor.decision.duration");
      expect(hist?.unit).toBe("s");
      expect(metricValue(c, "billing.interceptor.decision.duration")).toBe(6);
      const allowed = hist?.points.find(
        (p) => p.attributes["billing.decision.outcome"] === "allowed",
      );
      const h = allowed?.value as Histogram;
      expect(h.sum).toBeGreaterThan(0);
      expect(h.sum).toBeLessThan(1); // seconds, not milliseconds
      expect(seen).toHaveLength(6); // the wrapped onDecision still runs

      decisions.stop();
      expect(await call("good")).toBe("ok");
      const after = await otel.collect();
      expect(
        metricValue(after, "billing.interceptor.decisions", {
          ...say,
          "billing.decision.outcome": "allowed",
        }),
      ).toBe(2);
      expect(seen).toHaveLength(7);
    } finally {
      await server.close();
      await client.close(1000).catch(() => {});
    }
  });

  it("records every latency when more decisions come between collections than it buffers", async () => {
    const decisions = instrumentDecisions({
      meterProvider: otel.meterProvider,
      durationAttributes: "all",
    });
    const decide = (i: number) =>
      decisions.onDecision({
        // An outcome this module does not list (another change adds it to the interceptor):
        // recorded as given.
        outcome: "rate_limited" as ApiKeyDecision["outcome"],
        code: undefined,
        method: "bulk.v1.Bulk/Call",
        latencyMs: i % 2 === 0 ? 0.05 : 2,
      });
    for (let i = 0; i < 10_000; i++) decide(i);
    let c = await otel.collect();
    const attrs = { "rpc.method": "bulk.v1.Bulk/Call", "billing.decision.outcome": "rate_limited" };
    expect(metricValue(c, "billing.interceptor.decisions", attrs)).toBe(10_000);
    expect(metricValue(c, "billing.interceptor.decision.duration", attrs)).toBe(10_000);
    const h = c
      .get("billing.interceptor.decision.duration")
      ?.points.find((p) => p.attributes["rpc.method"] === "bulk.v1.Bulk/Call")?.value as Histogram;
    expect(h.sum).toBeCloseTo(5_000 * 0.00005 + 5_000 * 0.002, 6);
    for (let i = 0; i < 10; i++) decide(i);
    decisions.stop(); // what was buffered is recorded
    c = await otel.collect();
    expect(metricValue(c, "billing.interceptor.decision.duration", attrs)).toBe(10_010);
  });

  it("by default the latency histogram has no attributes: one exact distribution, the counter keeps them", async () => {
    const own = testMeterProvider();
    const decisions = instrumentDecisions({ meterProvider: own.meterProvider });
    const ms = [0.004, 0.03, 0.2, 1.5, 40];
    const methods = ["a.v1.A/One", "a.v1.A/Two", "b.v1.B/One"];
    let n = 0;
    let sum = 0;
    for (let i = 0; i < 9_000; i++) {
      const latencyMs = ms[i % ms.length] as number;
      decisions.onDecision({
        outcome: i % 3 === 0 ? "invalid" : "allowed",
        code: undefined,
        method: methods[i % methods.length] as string,
        latencyMs,
      });
      n++;
      sum += latencyMs / 1000;
    }
    const c = await own.collect();
    const points = c.get("billing.interceptor.decision.duration")?.points ?? [];
    expect(points).toHaveLength(1);
    expect(points[0]?.attributes).toEqual({});
    const h = points[0]?.value as Histogram;
    expect(h.count).toBe(n);
    expect(h.sum).toBeCloseTo(sum, 9);
    expect(h.min).toBeCloseTo(0.000004, 12);
    expect(h.max).toBeCloseTo(0.04, 12);
    // 10 µs bucket: the 4 µs latencies, one in five.
    expect(h.buckets.counts[0]).toBe(n / 5);
    expect(metricValue(c, "billing.interceptor.decisions", { "rpc.method": "a.v1.A/Two" })).toBe(
      3_000,
    );
    expect(
      metricValue(c, "billing.interceptor.decisions", { "billing.decision.outcome": "invalid" }),
    ).toBe(3_000);
    decisions.stop();
    await own.shutdown();
    expect(() => instrumentDecisions({ durationAttributes: "method" as "all" })).toThrowError(
      /durationAttributes/,
    );
  });

  // Two interceptors (two servers) on one meter: their counts add up (each observing the same
  // attribute set used to hide the other's); a stop and a new one do not reset the counter; a
  // full buffer records the one latency, never a whole buffer on one call.
  it("two instrumentDecisions on one meter add up; stop and again never reset the counter", async () => {
    const own = testMeterProvider();
    const d = (outcome: string) => ({
      outcome: outcome as ApiKeyDecision["outcome"],
      code: undefined,
      method: "a.v1.A/One",
      latencyMs: 0.01,
    });
    const first = instrumentDecisions({ meterProvider: own.meterProvider });
    const second = instrumentDecisions({ meterProvider: own.meterProvider });
    for (let i = 0; i < 5; i++) first.onDecision(d("allowed"));
    for (let i = 0; i < 3; i++) second.onDecision(d("allowed"));
    let c = await own.collect();
    expect(metricValue(c, "billing.interceptor.decisions")).toBe(8);
    expect(metricValue(c, "billing.interceptor.decision.duration")).toBe(8);
    first.stop();
    second.stop();
    const third = instrumentDecisions({ meterProvider: own.meterProvider });
    third.onDecision(d("allowed"));
    c = await own.collect();
    expect(metricValue(c, "billing.interceptor.decisions")).toBe(9);
    expect(() =>
      instrumentDecisions({ meterProvider: own.meterProvider, durationAttributes: "all" }),
    ).toThrowError(/durationAttributes/);
    // Past the buffer between two collections: each later call records its own latency.
    for (let i = 0; i < 20_000; i++) third.onDecision(d("allowed"));
    c = await own.collect();
    expect(metricValue(c, "billing.interceptor.decision.duration")).toBe(20_009);
    third.stop();
    await own.shutdown();
  });
});
