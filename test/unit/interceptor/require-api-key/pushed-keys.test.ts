import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { KeyState } from "../../../../gen/billing/v1/usage_pb.js";
import {
  type ApiKeyDecision,
  BillingClient,
  hashApiKey,
  requireApiKey,
} from "../../../../src/index.js";
import { EchoService } from "../../../gen/test/v1/echo_pb.js";
import { AedesBroker } from "../../../helpers/aedes-broker.js";
import { handlerRuns, startEchoServer } from "../../../helpers/echo-server.js";
import { decodeRecords, keyUpdate, testPublicKeys } from "../../../helpers/fixtures.js";
import { waitUntil } from "../../../helpers/time.js";

let broker: AedesBroker;
let billing: BillingClient;
let server: Awaited<ReturnType<typeof startEchoServer>>;
const decisions: ApiKeyDecision[] = [];

async function pushKeys(snapshot: boolean, keys: Parameters<typeof keyUpdate>[0]) {
  const before = billing.stats().keyUpdates;
  await broker.publish("billing/keys/update", keyUpdate(keys, snapshot));
  await waitUntil(() => billing.stats().keyUpdates > before, 5000, "key update applied");
}

beforeAll(async () => {
  broker = await AedesBroker.create();
  billing = new BillingClient({
    brokerHost: "127.0.0.1",
    brokerPort: broker.port,
    tls: false,
    heartbeatIntervalMs: 0,
    logger: () => {},
    keyUpdatePublicKeys: testPublicKeys,
  });
  server = await startEchoServer([
    requireApiKey({ exempt: ["test.v1.EchoService/Health"], onDecision: (d) => decisions.push(d) }),
  ]);
  await billing.connect();
  await waitUntil(() => broker.payloads("billing/keys/request").length > 0, 5000, "subscribed");
});
afterAll(async () => {
  await server.close();
  await billing.close();
  await broker.close();
});
beforeEach(async () => {
  decisions.length = 0;
  await pushKeys(true, [
    { key: "good-key", state: KeyState.ACTIVE, appId: "app-good" },
    { key: "blocked-key", state: KeyState.BLOCKED, appId: "app-b", reason: "unpaid invoice" },
  ]);
});

const transports: Array<[string, () => Transport]> = [
  ["Connect", () => createConnectTransport({ baseUrl: server.url, httpVersion: "2" })],
  ["gRPC", () => createGrpcTransport({ baseUrl: server.url })],
  ["gRPC-web", () => createGrpcWebTransport({ baseUrl: server.url, httpVersion: "2" })],
];

async function codeOf(p: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await p;
    return "ok";
  } catch (e) {
    return ConnectError.from(e).code;
  }
}

describe.each(transports)("over %s", (_name, makeTransport) => {
  const client = () => createClient(EchoService, makeTransport());
  const h = (headers: Record<string, string>) => ({ headers });

  it("lets a good key through, with the caller in the context values", async () => {
    const res = await client().say({ text: "hi" }, h({ "api-key": "good-key" }));
    expect(res).toMatchObject({ text: "hi", appId: "app-good" });
    expect(decisions.at(-1)).toMatchObject({
      outcome: "allowed",
      method: "test.v1.EchoService/Say",
    });
  });

  it("accepts apikey and authorization: Bearer too", async () => {
    expect((await client().say({ text: "a" }, h({ apikey: "good-key" }))).appId).toBe("app-good");
    expect((await client().say({ text: "b" }, h({ authorization: "bEaReR good-key" }))).appId).toBe(
      "app-good",
    );
  });

  it("refuses missing, unknown, two different, and blocked keys before the handler runs", async () => {
    const runs = handlerRuns.count;
    expect(await codeOf(client().say({ text: "x" }))).toBe(Code.Unauthenticated);
    expect(await codeOf(client().say({ text: "x" }, h({ "api-key": "nope" })))).toBe(
      Code.Unauthenticated,
    );
    expect(
      await codeOf(
        client().say({ text: "x" }, h({ "api-key": "good-key", authorization: "Bearer other" })),
      ),
    ).toBe(Code.Unauthenticated);
    const blocked = await client()
      .say({ text: "x" }, h({ "api-key": "blocked-key" }))
      .catch((e: unknown) => ConnectError.from(e));
    expect(blocked).toMatchObject({ code: Code.PermissionDenied });
    expect((blocked as ConnectError).rawMessage).toBe("API key blocked: unpaid invoice");
    expect(handlerRuns.count).toBe(runs);
    expect(decisions.map((d) => d.outcome)).toEqual(["missing", "invalid", "invalid", "blocked"]);
    for (const d of decisions) expect(JSON.stringify(d)).not.toContain("key");
  });

  it("refuses streaming calls of every kind before the first message reaches the handler", async () => {
    const runs = handlerRuns.count;
    const c = client();
    const drain = async (it: AsyncIterable<unknown>) => {
      for await (const _ of it) {
      }
    };
    async function* msgs() {
      yield { text: "1" };
      yield { text: "2" };
    }
    expect(await codeOf(drain(c.sayMany({ text: "x" })))).toBe(Code.Unauthenticated);
    expect(await codeOf(c.collect(msgs(), h({ "api-key": "blocked-key" })))).toBe(
      Code.PermissionDenied,
    );
    if (_name !== "gRPC-web") {
      expect(await codeOf(drain(c.chat(msgs(), h({ "api-key": "nope" }))))).toBe(
        Code.Unauthenticated,
      );
    }
    expect(handlerRuns.count).toBe(runs);
    const ok: string[] = [];
    for await (const r of c.sayMany({ text: "s" }, h({ "api-key": "good-key" }))) ok.push(r.text);
    expect(ok).toEqual(["s0", "s1", "s2"]);
  });

  it("lets exempt methods through without a key", async () => {
    expect((await client().health({})).text).toBe("ok");
    expect(decisions.at(-1)?.outcome).toBe("exempt");
  });
});

describe("key pushes through the broker take effect on the next call", () => {
  const client = () => createClient(EchoService, createGrpcTransport({ baseUrl: server.url }));
  const auth = { headers: { "api-key": "good-key" } };

  it("a delta that blocks a key, then a snapshot that drops it", async () => {
    expect(await codeOf(client().say({ text: "1" }, auth))).toBe("ok");
    await pushKeys(false, [{ key: "good-key", state: KeyState.BLOCKED, reason: "fraud" }]);
    expect(await codeOf(client().say({ text: "2" }, auth))).toBe(Code.PermissionDenied);
    await pushKeys(false, [{ key: "good-key", state: KeyState.ACTIVE, appId: "app-good" }]);
    expect(await codeOf(client().say({ text: "3" }, auth))).toBe("ok");
    await pushKeys(true, [{ key: "blocked-key", state: KeyState.BLOCKED }]);
    expect(await codeOf(client().say({ text: "4" }, auth))).toBe(Code.Unauthenticated);
  });

  it("shows a blocked key's reason without control characters, at most 200 characters", async () => {
    const nasty = "unpaid\r\nSet-Cookie: a=b\u0000\u202e<script>x</script>\u2028";
    await pushKeys(true, [
      { key: "k1", state: KeyState.BLOCKED, reason: nasty },
      { key: "k2", state: KeyState.BLOCKED, reason: "é".repeat(5000) },
    ]);
    const message = async (key: string, t: Transport) => {
      const e = await createClient(EchoService, t)
        .say({ text: "x" }, { headers: { "api-key": key } })
        .catch((err: unknown) => ConnectError.from(err));
      return (e as ConnectError).rawMessage;
    };
    for (const t of [
      createGrpcTransport({ baseUrl: server.url }),
      createConnectTransport({ baseUrl: server.url, httpVersion: "2" }),
    ]) {
      expect(await message("k1", t)).toBe(
        "API key blocked: unpaidSet-Cookie: a=b<script>x</script>",
      );
      const long = await message("k2", t);
      expect(Array.from(long)).toHaveLength("API key blocked: ".length + 200);
      expect(long.endsWith("é…")).toBe(true);
    }
  });

  it("refuses a key over 1,024 characters as invalid without hashing it", async () => {
    const longKey = "k".repeat(1025);
    // Even a list that holds its fingerprint does not let it in: it is never looked up.
    await pushKeys(true, [
      { key: longKey, state: KeyState.ACTIVE, appId: "long" },
      { key: "k".repeat(1024), state: KeyState.ACTIVE, appId: "max" },
    ]);
    expect(await codeOf(client().say({ text: "1" }, { headers: { "api-key": longKey } }))).toBe(
      Code.Unauthenticated,
    );
    expect(decisions.at(-1)?.outcome).toBe("invalid");
    const max = await client().say({ text: "2" }, { headers: { "api-key": "k".repeat(1024) } });
    expect(max.appId).toBe("max");
  });

  it("reportUsageFor reports for the verified caller (fingerprint and app id)", async () => {
    await billing.flush(5000);
    const before = broker.payloads("billing/report").length;
    await client().say({ text: "hello" }, auth);
    await waitUntil(() => broker.payloads("billing/report").length > before, 5000, "record");
    const rec = decodeRecords(broker.payloads("billing/report")).at(-1);
    expect(rec).toMatchObject({
      apiKeySha256: hashApiKey("good-key"),
      appId: "app-good",
      module: "llm",
      usage: 5n,
    });
  });
});

describe("a real @grpc/grpc-js client sees the gRPC status codes", () => {
  function call(metadata: Record<string, string>, port = server.port): Promise<number> {
    const Client = grpc.makeGenericClientConstructor({}, "x");
    const c = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(metadata)) md.set(k, v);
    return new Promise((resolve) => {
      c.makeUnaryRequest(
        "/test.v1.EchoService/Say",
        (arg: Buffer) => arg,
        (buf: Buffer) => buf,
        Buffer.from([0x0a, 0x02, 0x68, 0x69]), // EchoRequest { text: "hi" }
        md,
        (err) => {
          c.close();
          resolve(err ? (err.code as number) : grpc.status.OK);
        },
      );
    });
  }

  it("16 / 7 / OK", async () => {
    expect(await call({})).toBe(grpc.status.UNAUTHENTICATED);
    expect(await call({ "api-key": "nope" })).toBe(16);
    expect(await call({ "api-key": "blocked-key" })).toBe(grpc.status.PERMISSION_DENIED);
    expect(await call({ "api-key": "good-key" })).toBe(grpc.status.OK);
    expect(await call({ apikey: "good-key" })).toBe(0);
  });

  // Runs last in this file: it closes the shared client.
  it("14 (UNAVAILABLE) while the key list is not loaded, and with no BillingClient at all", async () => {
    await billing.close();
    // A fresh client whose broker is not there: its key list never loads.
    const unloaded = new BillingClient({
      brokerHost: "127.0.0.1",
      brokerPort: 9,
      tls: false,
      logger: () => {},
    });
    const runs = handlerRuns.count;
    try {
      expect(unloaded.keys.loaded).toBe(false);
      expect(await call({ "api-key": "good-key" })).toBe(grpc.status.UNAVAILABLE);
    } finally {
      await unloaded.close(0);
    }
    expect(await call({ "api-key": "good-key" })).toBe(14); // no client: fail closed
    expect(handlerRuns.count).toBe(runs);
  });
});
