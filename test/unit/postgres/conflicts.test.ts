import { afterAll, beforeAll, describe } from "vitest";
import { createPostgresUsageStore, type PostgresUsageStore } from "../../../src/postgres/index.js";
import { conflictCases } from "../../helpers/store-conflicts.js";

// One id with two contents, on an embedded PGlite (the same cases on a real server:
// test/integration/postgres-conflicts.test.ts).
let store: PostgresUsageStore;
beforeAll(async () => {
  store = await createPostgresUsageStore();
}, 120_000);
afterAll(async () => store?.close());

describe("a repeated id with different content (PGlite)", () => {
  conflictCases(() => store);
});
