import { once } from "node:events";
import { createServer } from "node:http";
import { connect as tcpConnect } from "node:net";
import { createClient, type Transport } from "@connectrpc/connect";
import {
  connectNodeAdapter,
  createConnectTransport,
  createGrpcTransport,
} from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { requireApiKey } from "../../../src/index.js";
import { unmatchableApiKeyProblem } from "../../../src/interceptor/unmatchable-api-key.js";
import { EchoService } from "../../gen/test/v1/echo_pb.js";
import { echoRoutes, startEchoServer } from "../../helpers/echo-server.js";

// `keys push` refuses exactly the raw keys that no request can bring to the interceptor intact:
// every character 0…U+00FF and a few above, at the start, inside and at the end of a key, sent
// over HTTP/2 (Connect and gRPC, Node's client) and as raw bytes over HTTP/1.1; the verifier
// records what arrived.

const arrived = new Set<string>();
const interceptor = requireApiKey({
  verify: async (key) => {
    arrived.add(key);
    return { appId: "a" };
  },
  cache: { ttlMs: 0, negativeTtlMs: 0 },
});
let h2: Awaited<ReturnType<typeof startEchoServer>>;
const h1 = createServer(connectNodeAdapter({ routes: echoRoutes, interceptors: [interceptor] }));
let h1Port: number;
beforeAll(async () => {
  h2 = await startEchoServer([interceptor]);
  h1.listen(0, "127.0.0.1");
  await once(h1, "listening");
  h1Port = (h1.address() as { port: number }).port;
});
afterAll(async () => {
  await h2.close();
  h1.close();
});

/** Sends `key` as the api-key header's raw bytes (Latin-1, or UTF-8 beyond it) over HTTP/1.1. */
async function rawHttp1(key: string): Promise<void> {
  const latin1 = [...key].every((c) => c.charCodeAt(0) <= 0xff);
  const body = Buffer.from('{"text":"x"}');
  const head = `POST /test.v1.EchoService/Say HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\napi-key: `;
  const socket = tcpConnect(h1Port, "127.0.0.1");
  socket.on("data", () => {});
  socket.on("error", () => {});
  socket.write(
    Buffer.concat([
      Buffer.from(head, "latin1"),
      Buffer.from(key, latin1 ? "latin1" : "utf8"),
      Buffer.from("\r\n\r\n"),
      body,
    ]),
  );
  await once(socket, "close");
}

const CHARS = [
  ...Array.from({ length: 256 }, (_, c) => c),
  0x100,
  0x2028,
  0x20ac,
  0xd800,
  0xfeff,
  0x3000,
];

describe("unmatchableApiKeyProblem against what arrives", () => {
  it("a key arrives intact by every path exactly when it finds no problem", async () => {
    const transports: Transport[] = [
      createConnectTransport({ baseUrl: h2.url, httpVersion: "2" }),
      createGrpcTransport({ baseUrl: h2.url }),
    ];
    const mismatches: string[] = [];
    for (const c of CHARS) {
      const ch = String.fromCharCode(c);
      for (const key of [`k${ch}ey`, `${ch}key`, `key${ch}`]) {
        const paths: boolean[] = [];
        for (const t of transports) {
          arrived.clear();
          await createClient(EchoService, t)
            .say({ text: "x" }, { headers: { "api-key": key } })
            .catch(() => {});
          paths.push(arrived.has(key));
        }
        arrived.clear();
        await rawHttp1(key);
        paths.push(arrived.has(key));
        const expected = unmatchableApiKeyProblem(key) === undefined;
        if (paths.some((p) => p !== expected)) {
          mismatches.push(`${JSON.stringify(key)}: expected ${expected}, arrived ${paths}`);
        }
      }
    }
    expect(mismatches).toEqual([]);
  }, 60_000);

  it("names the problem and where, never the key", () => {
    expect(unmatchableApiKeyProblem("")).toBe("is empty");
    expect(unmatchableApiKeyProblem("abc,def")).toMatch(/^holds a comma at character 4 of 7:/);
    expect(unmatchableApiKeyProblem("abc\u0001")).toMatch(
      /^holds the control character U\+0001 at character 4 of 4:/,
    );
    expect(unmatchableApiKeyProblem(" abc")).toMatch(/^starts with whitespace \(U\+0020\):/);
    expect(unmatchableApiKeyProblem("abc\u00a0")).toMatch(/^ends with whitespace \(U\+00A0\):/);
    expect(unmatchableApiKeyProblem("abc\u3000")).toMatch(/^holds U\+3000 at character 4 of 4:/);
    for (const key of ["abc,def", " abc", "abc\u0001", "abc\u3000"]) {
      expect(unmatchableApiKeyProblem(key)).not.toContain("abc");
    }
  });
});
