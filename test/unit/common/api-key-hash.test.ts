import { describe, expect, it } from "vitest";
import { hashApiKey } from "../../../src/common/api-key-hash.js";

describe("hashApiKey", () => {
  it("is the lowercase hex SHA-256", () => {
    expect(hashApiKey("test")).toBe(
      "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    );
    for (let i = 0; i < 5000; i++) hashApiKey(`k${i}`); // past the cache bound
    expect(hashApiKey("test")).toMatch(/^9f86d0/);
  });
});
