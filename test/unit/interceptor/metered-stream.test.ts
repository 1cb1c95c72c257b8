import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { describe, expect, it } from "vitest";
import { meteredStream } from "../../../src/index.js";
import { EchoService } from "../../gen/test/v1/echo_pb.js";
import { startServer } from "../../helpers/echo-server.js";
import { sleep } from "../../helpers/time.js";

describe("meteredStream when the source stalls after the client cancelled", () => {
  it.each([
    ["Connect", (url: string) => createConnectTransport({ baseUrl: url, httpVersion: "2" })],
    ["gRPC", (url: string) => createGrpcTransport({ baseUrl: url })],
  ])("bills the 3 messages sent at once, exactly once (%s)", async (_name, make) => {
    const billed: number[] = [];
    let release: () => void = () => {};
    const stall = new Promise<void>((r) => {
      release = r;
    });
    const server = await startServer(
      (router) =>
        router.service(EchoService, {
          async *sayMany(req, ctx) {
            async function* slow() {
              for (let i = 0; i < 3; i++) yield { text: `${req.text}${i}` };
              await stall; // an upstream that never answers again
              yield { text: "late" };
            }
            yield* meteredStream(slow(), (sent) => billed.push(sent), { signal: ctx.signal });
          },
        }),
      [],
    );
    try {
      const ac = new AbortController();
      let got = 0;
      try {
        for await (const _ of createClient(EchoService, make(server.url)).sayMany(
          { text: "m" },
          { signal: ac.signal },
        )) {
          if (++got === 3) ac.abort();
        }
      } catch {
        // the client's own abort
      }
      expect(got).toBe(3);
      const deadline = Date.now() + 3000;
      while (billed.length === 0 && Date.now() < deadline) {
        await sleep(20);
      }
      expect(billed).toEqual([3]);
      release();
      await sleep(100);
      expect(billed).toEqual([3]); // once
    } finally {
      release();
      await server.close();
    }
  });
});
