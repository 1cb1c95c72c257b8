import { randomFillSync } from "node:crypto";

// UUIDv7 (RFC 9562 §5.7): 48-bit Unix milliseconds, version 7, 12 bits of rand_a used as a
// counter that keeps ids from one process strictly increasing within a millisecond (method 1 of
// §6.2), variant 10, 62 random bits. Random bytes come from a pooled randomFillSync: one syscall
// per 512 ids instead of one per id, on the reportUsage hot path. Each id takes its own
// BYTES_PER_ID bytes of the pool (2 for a new millisecond's counter seed, 8 for rand_b), used
// once: no byte of one id is shared with another.

const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
const POOL_IDS = 512;
const BYTES_PER_ID = 10;
const pool = new Uint8Array(POOL_IDS * BYTES_PER_ID);
let poolOffset = pool.length;
let lastMs = -1;
let counter = 0;
const bytes = new Uint8Array(16);

/** A new UUIDv7 string (lowercase, hyphenated); strictly greater than the previous one. */
export function uuidV7(nowMs: number = Date.now()): string {
  if (poolOffset === pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  let ms = nowMs;
  if (ms > lastMs) {
    // A fresh millisecond: start the counter at a random value in the lower half, so that
    // there is room for at least 2048 more ids in this millisecond.
    counter = (((pool[poolOffset] as number) << 8) | (pool[poolOffset + 1] as number)) & 0x7ff;
    lastMs = ms;
  } else {
    // Same (or an earlier, if the clock stepped back) millisecond: count up; on overflow borrow
    // the next millisecond so the order still holds.
    counter++;
    if (counter > 0xfff) {
      counter = 0;
      lastMs++;
    }
    ms = lastMs;
  }
  const hi = Math.floor(ms / 0x1000000);
  const lo = ms % 0x1000000;
  bytes[0] = (hi >>> 16) & 0xff;
  bytes[1] = (hi >>> 8) & 0xff;
  bytes[2] = hi & 0xff;
  bytes[3] = (lo >>> 16) & 0xff;
  bytes[4] = (lo >>> 8) & 0xff;
  bytes[5] = lo & 0xff;
  bytes[6] = 0x70 | (counter >>> 8);
  bytes[7] = counter & 0xff;
  // rand_b: bytes 2..9 of this id's share of the pool (62 bits after the variant).
  bytes[8] = 0x80 | ((pool[poolOffset + 2] as number) & 0x3f);
  for (let i = 9; i < 16; i++) bytes[i] = pool[poolOffset + i - 6] as number;
  poolOffset += BYTES_PER_ID;
  const h = (i: number) => HEX[bytes[i] as number] as string;
  return `${h(0)}${h(1)}${h(2)}${h(3)}-${h(4)}${h(5)}-${h(6)}${h(7)}-${h(8)}${h(9)}-${h(10)}${h(11)}${h(12)}${h(13)}${h(14)}${h(15)}`;
}
