/**
 * billing-sdk/spool: the durable outbox, an optional part (needs `better-sqlite3` 12).
 *
 * @module billing-sdk/spool
 */

export type { RecordSpool, SpooledRecord } from "../publisher/record-spool.js";
export type { SpoolContractCase } from "./spool-contract.js";
export { spoolContractCases } from "./spool-contract.js";
export type { SqliteSpoolOptions } from "./sqlite-spool.js";
export { SqliteSpool } from "./sqlite-spool.js";
