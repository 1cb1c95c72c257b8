import { describe, expect, it } from "vitest";
import { uuidV7 } from "../../../src/protocol/uuid-v7.js";

// Its own file: the generator keeps its clock across calls, and other tests move it.

// Issue 9.3: ids shared bits with the next id's counter.
// ---- 3. UUIDv7 randomness (last: it moves the generator's clock ahead by ~20 s) --------------

describe("every UUIDv7 carries its own 62 fresh random bits", () => {
  const N = 20_000;
  const bytesOf = (id: string) => Buffer.from(id.replaceAll("-", ""), "hex");

  it("consecutive ids (one per millisecond) share no bits; rand_b is uniform; no excess of ids ending in 0000", () => {
    // Each id in a new millisecond: its 12-bit counter (rand_a) is seeded afresh.
    const start = Date.now() + 1;
    const ids = Array.from({ length: N }, (_, i) => uuidV7(start + i));
    const b = ids.map(bytesOf);
    const at = (n: number, i: number) => (b[n] as Buffer)[i] as number;
    for (let n = 0; n < N; n++) {
      expect(at(n, 6) >> 4).toBe(7);
      expect(at(n, 8) >> 6).toBe(2);
    }
    // (a) The low 11 bits of id n's last two bytes vs id n+1's counter: equal by chance 1/2048.
    let same = 0;
    for (let n = 0; n + 1 < N; n++) {
      const tail = ((at(n, 14) << 8) | at(n, 15)) & 0x7ff;
      const counter = ((at(n + 1, 6) & 0x0f) << 8) | at(n + 1, 7);
      if (tail === counter) same++;
    }
    // Expected ~10 in 20,000; 40 is far beyond chance.
    expect
      .soft(same, `ids whose last bits are the next id's counter, of ${N - 1}`)
      .toBeLessThan(40);
    // (b) No excess of ids ending in 0000: by chance 1 in 65,536 (~0.3 here).
    const zeros = ids.filter((id) => id.endsWith("0000")).length;
    expect.soft(zeros, `ids ending in 0000, of ${N}`).toBeLessThanOrEqual(5);
    // (c) Each of the 62 rand_b bits is set in ~half the ids (±6 standard deviations).
    const sd = Math.sqrt(N / 4);
    const skewed: string[] = [];
    for (let bit = 2; bit < 64; bit++) {
      const byte = 8 + (bit >> 3);
      const mask = 0x80 >> (bit & 7);
      let ones = 0;
      for (let n = 0; n < N; n++) if ((at(n, byte) & mask) !== 0) ones++;
      if (Math.abs(ones - N / 2) > 6 * sd) skewed.push(`rand_b bit ${bit - 2}: ${ones}/${N}`);
    }
    expect.soft(skewed).toEqual([]);
  });
});
