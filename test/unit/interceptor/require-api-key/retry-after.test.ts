import { Code, type ConnectError } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { active, errorOf, say, startRulesWorld } from "../../../helpers/rules-world.js";

let w: Awaited<ReturnType<typeof startRulesWorld>>;
beforeAll(async () => {
  w = await startRulesWorld();
});
afterAll(async () => {
  await w?.close();
});

describe("retry-after after a deep usage debt", () => {
  it("is capped at 2^31-1 s and written in plain digits", async () => {
    await w.pushKeys(true, [
      active("f6-debt", { rateLimits: [{ limit: 1, windowSeconds: 4294967295, module: "llm" }] }),
    ]);
    await w.billing.reportUsage({ apiKey: "f6-debt", module: "llm", model: "m", usage: 2 ** 40 });
    for (const t of [
      createConnectTransport({ baseUrl: w.server.url, httpVersion: "2" }),
      createGrpcTransport({ baseUrl: w.server.url }),
    ]) {
      const e = (await errorOf(say(t, "f6-debt"))) as ConnectError;
      expect(e.code).toBe(Code.ResourceExhausted);
      expect(e.metadata.get("retry-after")).toBe("2147483647");
      expect(e.rawMessage).toBe("rate limit exceeded (retry after 2147483647 s)");
    }
  });
});
