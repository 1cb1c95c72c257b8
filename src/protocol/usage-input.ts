import { clone, isMessage, type JsonObject, toBinary } from "@bufbuild/protobuf";
import { type Timestamp, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type UsageRecord, UsageRecordSchema } from "../../gen/billing/v1/usage_pb.js";
import { BillingError } from "../billing-error.js";
import { hashApiKey, MAX_API_KEY_LENGTH } from "../common/api-key-hash.js";
import { isSha256Hex } from "../common/sha256-hex.js";
import { isWellFormed, nameProblem } from "../common/text.js";
import { MetadataBudget } from "./metadata-budget.js";
import { writeUsageRecord } from "./usage-record-writer.js";
import { uuidV7 } from "./uuid-v7.js";

/** What a service passes to `reportUsage`. */
export interface UsageInit {
  /**
   * The caller's raw API key, at most 1,024 characters. Hashed (SHA-256) before anything else;
   * never sent, logged or kept.
   */
  apiKey: string;
  /**
   * The kind of service, e.g. `"llm"`, `"tts"`, `"asr"`: 1–128 characters, without control,
   * line-separator or bidirectional-control characters.
   */
  module: string;
  /** The model or engine, e.g. `"gpt-4"`: 1–128 characters, the same characters as `module`. */
  model: string;
  /**
   * The amount used in the module's unit (tokens, characters, seconds…): a non-negative safe
   * integer, or a bigint up to 2^64-1. Floats, NaN, negatives and strings are refused.
   */
  usage: number | bigint;
  /**
   * Free-form details: a plain JSON-like object (strings, finite numbers, booleans, null, arrays,
   * plain objects; at most 32 levels deep, 10,000 values). `undefined`, functions, symbols,
   * bigints, class instances, cycles and strings with a lone surrogate are refused. The whole
   * encoded record must fit `maxRecordBytes`.
   */
  metadata?: JsonObject;
}

/** The facts the SDK adds to each record. */
export interface RecordContext {
  producer: string;
  maxRecordBytes: number;
  appIdOf: (apiKeySha256: string) => string;
}

/** A record ready to publish: its id and its encoded bytes, and what key rules debit. */
export interface EncodedRecord {
  id: string;
  bytes: Uint8Array;
  apiKeySha256: string;
  module: string;
  usage: bigint;
}

const MAX_NAME_LENGTH = 128;
const MAX_U64 = 0xffff_ffff_ffff_ffffn;
/** A lowercase hyphenated UUID (a record id). */
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
// google.protobuf.Timestamp's range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
const MIN_SECONDS = -62_135_596_800n;
const MAX_SECONDS = 253_402_300_799n;
// A lower bound of the bytes every record takes besides its names, usage and metadata: the id
// (36 characters), the fingerprint (64), the time (an empty Timestamp still takes its tag and
// length) and the metadata field's own tag and length.
const FIXED_BYTES = 38 + 66 + 2 + 2;

/**
 * `value` as a name (module, model, app id, producer): a string of 1–128 characters (or empty,
 * with `allowEmpty`) that `nameProblem` accepts. Throws `INVALID_ARGUMENT` naming `field`.
 */
export function checkName(field: string, value: unknown, allowEmpty = false): string {
  if (typeof value !== "string") throw BillingError.invalid(field, "must be a string");
  if (value.length === 0) {
    if (allowEmpty) return value;
    throw BillingError.invalid(field, "must not be empty");
  }
  if (value.length > MAX_NAME_LENGTH) {
    throw BillingError.invalid(
      field,
      `must be at most ${MAX_NAME_LENGTH} characters, not ${value.length}`,
    );
  }
  const problem = nameProblem(value);
  if (problem !== undefined) throw BillingError.invalid(field, problem);
  return value;
}

function checkUsage(value: unknown): bigint {
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw BillingError.invalid(
        "usage",
        `must be a non-negative safe integer or a bigint, not ${String(value)}`,
      );
    }
    return BigInt(value);
  }
  if (typeof value === "bigint") {
    if (value < 0n || value > MAX_U64) {
      throw BillingError.invalid("usage", `must be in 0..2^64-1, not ${value}`);
    }
    return value;
  }
  throw BillingError.invalid("usage", `must be a number or a bigint, not a ${typeof value}`);
}

function checkApiKey(value: unknown): string {
  if (typeof value !== "string" || value.length === 0) {
    throw BillingError.invalid("apiKey", "must be a non-empty string");
  }
  if (value.length > MAX_API_KEY_LENGTH) {
    throw BillingError.invalid(
      "apiKey",
      `must be at most ${MAX_API_KEY_LENGTH} characters, not ${value.length}`,
    );
  }
  if (!isWellFormed(value)) {
    throw BillingError.invalid("apiKey", "must not contain a lone surrogate (invalid UTF-16)");
  }
  return value;
}

/** Throws `INVALID_ARGUMENT` when `t` is outside 0001–9999 or its nanos outside 0..999,999,999. */
export function checkTimestamp(field: string, t: Timestamp): void {
  if (t.seconds < MIN_SECONDS || t.seconds > MAX_SECONDS) {
    throw BillingError.invalid(field, "must be between 0001-01-01 and 9999-12-31");
  }
  if (!Number.isInteger(t.nanos) || t.nanos < 0 || t.nanos > 999_999_999) {
    throw BillingError.invalid(`${field}.nanos`, "must be in 0..999999999");
  }
}

/**
 * The metadata, checked within the bytes a record of `fixedBytes` leaves it; returns the copy
 * that was checked (the one to encode).
 */
function checkMetadata(value: unknown, ctx: RecordContext, fixedBytes: number): JsonObject {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw BillingError.invalid("metadata", "must be a plain object");
  }
  // The Struct's own tag and length are in FIXED_BYTES, not in the walk's budget.
  return new MetadataBudget(ctx.maxRecordBytes - fixedBytes + 2, ctx.maxRecordBytes).check(value);
}

/**
 * The app id the key list gives a key, when it is a good name; else "" (the backend resolves it
 * from the fingerprint): text pushed over MQTT never reaches the wire unchecked.
 */
function knownAppId(ctx: RecordContext, apiKeySha256: string): string {
  const appId = ctx.appIdOf(apiKeySha256);
  return appId.length <= MAX_NAME_LENGTH && nameProblem(appId) === undefined ? appId : "";
}

function encode(record: UsageRecord, ctx: RecordContext): EncodedRecord {
  const bytes = toBinary(UsageRecordSchema, record);
  checkSize(bytes, ctx);
  const { id, apiKeySha256, module, usage } = record;
  return { id, bytes, apiKeySha256, module, usage };
}

function checkSize(bytes: Uint8Array, ctx: RecordContext): void {
  if (bytes.length > ctx.maxRecordBytes) {
    throw BillingError.invalid(
      "metadata",
      `the encoded record is ${bytes.length} bytes, more than maxRecordBytes (${ctx.maxRecordBytes})`,
    );
  }
}

/** A lower bound of a record's bytes without its metadata: proto3 omits empty strings and 0. */
const fixedBytes = (usage: bigint, ...names: string[]) =>
  names.reduce((sum, n) => sum + (n.length === 0 ? 0 : n.length + 2), FIXED_BYTES) +
  (usage === 0n ? 0 : 2);

/**
 * Validates what was passed to `reportUsage` and encodes the `UsageRecord`. Throws a
 * `BillingError` (`INVALID_ARGUMENT`, naming the field) before anything is changed. What is
 * accepted arrives byte for byte: text that UTF-8 could not carry is refused, never replaced.
 */
export function encodeUsage(input: unknown, ctx: RecordContext): EncodedRecord {
  if (typeof input !== "object" || input === null) {
    throw BillingError.invalid("usage report", "must be an object");
  }
  if (isMessage(input, UsageRecordSchema)) return encodeRecord(input, ctx);
  const init = input as Partial<Record<keyof UsageInit, unknown>>;
  const apiKey = checkApiKey(init.apiKey);
  const module = checkName("module", init.module);
  const model = checkName("model", init.model);
  const usage = checkUsage(init.usage);
  const metadata =
    init.metadata === undefined
      ? undefined
      : checkMetadata(init.metadata, ctx, fixedBytes(usage, module, model, ctx.producer));
  const apiKeySha256 = hashApiKey(apiKey);
  const now = Date.now();
  const id = uuidV7(now);
  // Written directly (the same bytes as toBinary, see usage-record-writer.ts), once.
  const bytes = writeUsageRecord({
    id,
    apiKeySha256,
    appId: knownAppId(ctx, apiKeySha256),
    module,
    model,
    usage,
    seconds: Math.floor(now / 1000),
    nanos: (now % 1000) * 1_000_000,
    metadata,
    producer: ctx.producer,
  });
  checkSize(bytes, ctx);
  return { id, bytes, apiKeySha256, module, usage };
}

/**
 * A `UsageRecord` built with `create()`: its fields are checked like a `UsageInit`'s; an empty
 * `id`, `occurredAt`, `appId` or `producer` is filled in, a set one is kept (so a record replayed
 * from elsewhere keeps its idempotency key and event time).
 */
function encodeRecord(input: UsageRecord, ctx: RecordContext): EncodedRecord {
  if (!isSha256Hex(input.apiKeySha256)) {
    throw BillingError.invalid("apiKeySha256", "must be 64 lowercase hex characters");
  }
  if (input.id !== "" && !UUID.test(input.id)) {
    throw BillingError.invalid("id", "must be empty or a lowercase hyphenated UUID");
  }
  const module = checkName("module", input.module);
  const model = checkName("model", input.model);
  const appId = checkName("appId", input.appId, true);
  const producer = checkName("producer", input.producer, true);
  const usage = checkUsage(input.usage);
  if (input.occurredAt !== undefined) checkTimestamp("occurredAt", input.occurredAt);
  const metadata =
    input.metadata === undefined
      ? undefined
      : checkMetadata(
          input.metadata,
          ctx,
          fixedBytes(usage, module, model, appId, producer || ctx.producer),
        );
  const now = Date.now();
  const record = clone(UsageRecordSchema, input); // the caller's message is left as it was
  record.usage = usage;
  if (metadata !== undefined) record.metadata = metadata;
  if (record.id === "") record.id = uuidV7(now);
  if (record.occurredAt === undefined) record.occurredAt = timestampFromMs(now);
  if (record.appId === "") record.appId = knownAppId(ctx, record.apiKeySha256);
  if (record.producer === "") record.producer = ctx.producer;
  return encode(record, ctx);
}
