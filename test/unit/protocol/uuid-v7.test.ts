import { describe, expect, it } from "vitest";
import { uuidV7 } from "../../../src/protocol/uuid-v7.js";

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
