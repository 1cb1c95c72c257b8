import { afterAll, beforeAll, describe } from "vitest";
import { createPostgresUsageStore, type PostgresUsageStore } from "../../../src/postgres/index.js";
import { PostgresServer } from "../../helpers/postgres.js";
import { postgresAvailable } from "../../helpers/require-broker.js";
import { conflictCases } from "../../helpers/store-conflicts.js";

// One id with two contents, on a real PostgreSQL server (node-postgres, a pool of connections:
// two writers really run at once).
describe.runIf(postgresAvailable())("a repeated id with different content (PostgreSQL)", () => {
  let db: PostgresServer;
  let store: PostgresUsageStore;
  beforeAll(async () => {
    db = await PostgresServer.start();
    store = await createPostgresUsageStore({ connectionString: db.url, schema: "conflicts" });
  });
  afterAll(async () => {
    await store?.close();
    await db?.close();
  });
  conflictCases(() => store);
});
