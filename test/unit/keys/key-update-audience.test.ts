import { fromBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HeartbeatSchema, KeyState } from "../../../gen/billing/v1/usage_pb.js";
import { BillingClient, type BillingClientOptions, type BillingError } from "../../../src/index.js";
import { instrumentClient } from "../../../src/otel/index.js";
import { resolveOptions } from "../../../src/publisher/client/options.js";
import { useEmbeddedBroker } from "../../helpers/embedded-broker.js";
import { keyUpdate, nextVersion, testPublicKeys } from "../../helpers/fixtures.js";
import { metricValue, testMeterProvider } from "../../helpers/metrics-reader.js";
import { waitUntil } from "../../helpers/time.js";

// Key updates are bound to a deployment: the signed `audience` must be the client's
// keyUpdateAudience (default: the topic prefix), so one signing key can serve staging and
// production without an update for one applying in the other.
const suite = useEmbeddedBroker();
let otel: ReturnType<typeof testMeterProvider>;
beforeAll(() => {
  otel = testMeterProvider();
});
afterAll(async () => otel.shutdown());

const GOOD = { key: "good-key", state: KeyState.ACTIVE, appId: "app-good" };
const refusedTotal = (c: BillingClient) =>
  Object.values(c.stats().keyUpdatesRefused).reduce((a, b) => a + b, 0);

async function client(extra: BillingClientOptions = {}) {
  const c = new BillingClient(suite.options(extra));
  await c.connect();
  const prefix = extra.topicPrefix ?? "billing";
  await waitUntil(
    () => suite.broker.payloads(`${prefix}/keys/request`).length > 0,
    5000,
    "subscribed",
  );
  return c;
}
async function push(c: BillingClient, payload: Uint8Array, prefix = "billing") {
  const before = c.stats().keyUpdates + refusedTotal(c);
  await suite.broker.publish(`${prefix}/keys/update`, payload);
  await waitUntil(() => c.stats().keyUpdates + refusedTotal(c) > before, 5000, "update handled");
}
const forAudience = (audience: string) => keyUpdate([GOOD], true, { audience });

describe("keyUpdateAudience", () => {
  it("refuses an update for another deployment, or for none, as wrongAudience: counted in stats, heartbeat and metrics", async () => {
    const c = await client({ keyUpdateAudience: "prod", heartbeatIntervalMs: 30 });
    const metrics = instrumentClient(c, { meterProvider: otel.meterProvider });
    try {
      await push(c, forAudience("staging"));
      await push(c, forAudience(""));
      await push(c, forAudience("billing")); // the topic prefix is not the audience set
      expect(c.keys.loaded).toBe(false);
      expect(c.stats().keyUpdatesRefused.wrongAudience).toBe(3);
      const refusal = suite.logs.find((l) => l.msg.startsWith("refused"));
      expect(refusal?.msg).toMatch(
        /wrongAudience: its audience is "staging", not keyUpdateAudience "prod"/,
      );
      await push(c, forAudience("prod"));
      expect(c.keys.lookup("good-key")?.appId).toBe("app-good");

      const start = suite.broker.payloads("billing/heartbeat").length;
      await waitUntil(
        () => suite.broker.payloads("billing/heartbeat").length > start,
        5000,
        "beat",
      );
      const beat = fromBinary(
        HeartbeatSchema,
        suite.broker.payloads("billing/heartbeat").at(-1) as Buffer,
      );
      expect(beat.keyUpdatesRefused?.wrongAudience).toBe(3n);
      const m = await otel.collect();
      expect(
        metricValue(m, "billing.key_list.refused.updates", {
          "billing.refusal.reason": "wrongAudience",
        }),
      ).toBe(3);
    } finally {
      metrics.stop();
    }
  });

  it("acceptUnboundKeyUpdates takes an update that names no audience, never one for another", async () => {
    const c = await client({ keyUpdateAudience: "prod", acceptUnboundKeyUpdates: true });
    await push(c, forAudience("staging"));
    expect(c.keys.loaded).toBe(false);
    await push(c, forAudience(""));
    expect(c.keys.loaded).toBe(true);
    expect(c.stats().keyUpdatesRefused.wrongAudience).toBe(1);
  });

  it("defaults to the topic prefix, and says so at start when key updates are verified", async () => {
    const c = await client({ topicPrefix: "shared" });
    const warned = suite.logs.filter((l) => l.msg.startsWith("keyUpdateAudience is not set"));
    expect(warned).toHaveLength(1);
    expect(warned[0]?.level).toBe("warn");
    expect(warned[0]?.msg).toMatch(/must name the audience "shared" \(the topic prefix\)/);
    await push(
      c,
      keyUpdate([GOOD], true, { version: nextVersion(), audience: "shared" }),
      "shared",
    );
    expect(c.keys.loaded).toBe(true);
  });

  it("no such warning once it is set, nor when no key updates are verified", async () => {
    let c = await client({ keyUpdateAudience: "prod" });
    await c.close(100);
    c = await client({ keyUpdatePublicKeys: {} });
    expect(suite.logs.some((l) => l.msg.startsWith("keyUpdateAudience is not set"))).toBe(false);
    await c.close(100);
  });

  it("is checked: a name of 1..128 characters; acceptUnboundKeyUpdates a boolean", () => {
    const field = (o: BillingClientOptions) => {
      try {
        resolveOptions(o);
      } catch (e) {
        return [(e as BillingError).code, (e as BillingError).field, (e as Error).message];
      }
      return undefined;
    };
    for (const bad of ["", "x".repeat(129), "prod\n", "a\u202eb", 42]) {
      const [code, name] = field({ keyUpdateAudience: bad as string }) ?? [];
      expect(code).toBe("INVALID_ARGUMENT");
      expect(name).toBe("keyUpdateAudience");
    }
    expect(field({ acceptUnboundKeyUpdates: "false" as never })?.[1]).toBe(
      "acceptUnboundKeyUpdates",
    );
    expect(field({ keyUpdateAudience: "prod-eu", acceptUnboundKeyUpdates: true })).toBeUndefined();
    expect(resolveOptions({}).acceptUnboundKeyUpdates).toBe(false);
    expect(resolveOptions({}).keyUpdateAudience).toBeUndefined();
  });

  it("left unset while key updates are checked, the topic prefix must pass as an audience", () => {
    const error = (o: BillingClientOptions) => {
      try {
        resolveOptions(o);
      } catch (e) {
        return e as BillingError;
      }
      return undefined;
    };
    for (const topicPrefix of ["bill\u202eing", "p".repeat(150), "a\u0007b"]) {
      for (const checked of [
        { keyUpdatePublicKeys: testPublicKeys },
        { insecureAcceptUnsignedKeyUpdates: true },
      ]) {
        const e = error({ topicPrefix, ...checked });
        expect(e?.code).toBe("INVALID_ARGUMENT");
        expect(e?.field).toBe("keyUpdateAudience");
        expect(e?.message).toMatch(/the topic prefix ".*" is not a valid audience \(it must /);
        expect(e?.message).toMatch(/: set keyUpdateAudience$/);
        // The prefix is shown without the characters a terminal would act on.
        expect(e?.message.includes("\u202e") || e?.message.includes("\u0007")).toBe(false);
        expect(e?.message).not.toContain("p".repeat(100)); // and cut
        // Set, or nothing checked: the prefix is only a topic.
        expect(error({ topicPrefix, ...checked, keyUpdateAudience: "prod" })).toBeUndefined();
      }
      expect(error({ topicPrefix })).toBeUndefined();
    }
  });
});
