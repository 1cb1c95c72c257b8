import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPostgresUsageStore, type PostgresUsageStore } from "../../../src/postgres/index.js";

// What the store keeps of a payload that cannot be billed (found by the review of issue 12: a
// huge one passed PostgreSQL's limits and blocked every write after it).
let store: PostgresUsageStore;
beforeAll(async () => {
  store = await createPostgresUsageStore({ schema: "rej" });
}, 120_000);
afterAll(async () => store?.close());

describe("rejected_records", () => {
  it("keeps the beginning of a large payload, keyed by the whole payload's hash, and says so", async () => {
    const big = Buffer.alloc(3_000_000, 7);
    const small = Buffer.from([1, 2, 3]);
    await store.write({
      records: [],
      rejected: [
        { reason: "the message is not a billing.v1.UsageBatch", payload: big },
        { reason: "the message holds no record", payload: small },
      ],
    });
    const rows = await store.query<{ sha: string; n: number; reason: string }>(
      "SELECT payload_sha256 AS sha, length(payload) AS n, reason FROM rej.rejected_records ORDER BY n",
    );
    expect(rows).toEqual([
      {
        sha: createHash("sha256").update(small).digest("hex"),
        n: 3,
        reason: "the message holds no record",
      },
      {
        sha: createHash("sha256").update(big).digest("hex"),
        n: 16_384,
        reason:
          "the message is not a billing.v1.UsageBatch (a payload of 3000000 bytes: its first 16384 are kept)",
      },
    ]);
    // The same payload again is kept once.
    await store.write({ records: [], rejected: [{ reason: "again", payload: big }] });
    const n = await store.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM rej.rejected_records",
    );
    expect(n[0]?.n).toBe(2);
  }, 60_000);
});
