import type { IConnackPacket } from "mqtt";
import { describe, expect, it } from "vitest";
import {
  connackProblem,
  connectionLimits,
} from "../../../../src/publisher/client/connection-limits.js";
import { resolveOptions } from "../../../../src/publisher/client/options.js";

// What a broker's CONNACK allows one connection, and a CONNACK that allows no record at all.

const connack = (maximumPacketSize?: number, receiveMaximum?: number): IConnackPacket => ({
  cmd: "connack",
  sessionPresent: false,
  reasonCode: 0,
  properties: {
    ...(maximumPacketSize === undefined ? {} : { maximumPacketSize }),
    ...(receiveMaximum === undefined ? {} : { receiveMaximum }),
  },
});
const o = resolveOptions({ tls: false });

describe("connection limits", () => {
  it("keep batches and records within the broker's maximum packet size and receive maximum", () => {
    const limits = connectionLimits(o, "billing/report", connack(20_000, 7));
    expect(limits.window).toBe(7);
    expect(limits.batchBytes).toBeLessThan(20_000 - "billing/report".length);
    expect(limits.maxRecordBytes).toBe(limits.batchBytes - 6);
    expect(connackProblem(o, "billing/report", connack(20_000))).toBeUndefined();
    expect(connackProblem(o, "billing/report", connack())).toBeUndefined(); // MQTT 3.1.1
  });

  it("a maximum packet size that leaves no room for a record: PROTOCOL naming it and the topic", () => {
    for (const size of [100, 143]) {
      const err = connackProblem(o, "billing/report", connack(size));
      expect(err?.code).toBe("PROTOCOL");
      expect(err?.message).toContain(`maximum packet size (${size} bytes)`);
      expect(err?.message).toContain('topic "billing/report"');
    }
    // 128 bytes of PUBLISH overhead + 14 of topic + 6 of framing + 1 byte of record.
    expect(connackProblem(o, "billing/report", connack(149))).toBeUndefined();
    expect(connectionLimits(o, "billing/report", connack(149)).maxRecordBytes).toBe(1);
  });
});
