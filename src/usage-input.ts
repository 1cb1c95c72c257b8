import { clone, create, isMessage, type JsonObject, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type UsageRecord, UsageRecordSchema } from "../gen/billing/v1/usage_pb.js";
import { hashApiKey } from "./api-key-hash.js";
import { BillingError } from "./billing-error.js";
import { uuidV7 } from "./uuid-v7.js";

/** What a service passes to `reportUsage`. */
export interface UsageInit {
  /** The caller's raw API key. Hashed (SHA-256) before anything else; never sent or logged. */
  apiKey: string;
  /** The kind of service, e.g. `"llm"`, `"tts"`, `"asr"`: 1–128 characters, no control characters. */
  module: string;
  /** The model or engine, e.g. `"gpt-4"`: 1–128 characters, no control characters. */
  model: string;
  /**
   * The amount used in the module's unit (tokens, characters, seconds…): a non-negative safe
   * integer, or a bigint up to 2^64-1. Floats, NaN, negatives and strings are refused.
   */
  usage: number | bigint;
  /**
   * Free-form details: a plain JSON-like object (strings, finite numbers, booleans, null, arrays,
   * plain objects; at most 32 levels deep). `undefined`, functions, symbols, bigints, class
   * instances and cycles are refused. The whole encoded record must fit `maxRecordBytes`.
   */
  metadata?: JsonObject;
}

/** The facts the SDK adds to each record. */
export interface RecordContext {
  producer: string;
  maxRecordBytes: number;
  appIdOf: (apiKeySha256: string) => string;
}

/** A record ready to publish: its id and its encoded bytes. */
export interface EncodedRecord {
  id: string;
  bytes: Uint8Array;
}

const MAX_NAME_LENGTH = 128;
const MAX_DEPTH = 32;
const MAX_VALUES = 10_000;
const MAX_U64 = 0xffff_ffff_ffff_ffffn;
// C0 controls, DEL and C1 controls.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const HEX64 = /^[0-9a-f]{64}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function checkName(field: string, value: unknown): string {
  if (typeof value !== "string") throw BillingError.invalid(field, "must be a string");
  if (value.length === 0) throw BillingError.invalid(field, "must not be empty");
  if (value.length > MAX_NAME_LENGTH) {
    throw BillingError.invalid(field, `must be at most ${MAX_NAME_LENGTH} characters`);
  }
  if (CONTROL.test(value)) throw BillingError.invalid(field, "must not contain control characters");
  return value;
}

function checkUsage(value: unknown): bigint {
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw BillingError.invalid("usage", "must be a non-negative safe integer or a bigint");
    }
    return BigInt(value);
  }
  if (typeof value === "bigint") {
    if (value < 0n || value > MAX_U64) throw BillingError.invalid("usage", "must be in 0..2^64-1");
    return value;
  }
  throw BillingError.invalid("usage", "must be a number or a bigint");
}

function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

// Walks metadata without allocating: a cycle shows up as nesting past MAX_DEPTH, and a budget of
// MAX_VALUES bounds the walk (shared sub-objects are walked again each time they appear).
function checkJson(value: unknown, path: string, depth: number, budget: { left: number }): void {
  if (--budget.left < 0) {
    throw BillingError.invalid("metadata", `has more than ${MAX_VALUES} values`);
  }
  switch (typeof value) {
    case "string":
    case "boolean":
      return;
    case "number":
      if (!Number.isFinite(value)) throw BillingError.invalid(path, "must be a finite number");
      return;
    case "object": {
      if (value === null) return;
      if (depth >= MAX_DEPTH) {
        throw BillingError.invalid(path, `nests deeper than ${MAX_DEPTH} levels (or is a cycle)`);
      }
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          checkJson(value[i], `${path}[${i}]`, depth + 1, budget);
        }
        return;
      }
      if (!isPlainObject(value)) {
        throw BillingError.invalid(path, "must be a plain object, not a class instance");
      }
      if (Object.getOwnPropertySymbols(value).length > 0) {
        throw BillingError.invalid(path, "must not have symbol keys");
      }
      for (const key of Object.keys(value)) {
        checkJson((value as Record<string, unknown>)[key], `${path}.${key}`, depth + 1, budget);
      }
      return;
    }
    default:
      // undefined, function, symbol, bigint
      throw BillingError.invalid(path, `must be JSON-like, not ${typeof value}`);
  }
}

function checkMetadata(value: unknown): JsonObject | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw BillingError.invalid("metadata", "must be a plain object");
  }
  checkJson(value, "metadata", 0, { left: MAX_VALUES });
  return value as JsonObject;
}

function encode(record: UsageRecord, ctx: RecordContext): EncodedRecord {
  const bytes = toBinary(UsageRecordSchema, record);
  if (bytes.length > ctx.maxRecordBytes) {
    throw BillingError.invalid(
      "metadata",
      `the encoded record is ${bytes.length} bytes, more than maxRecordBytes (${ctx.maxRecordBytes})`,
    );
  }
  return { id: record.id, bytes };
}

/**
 * Validates what was passed to `reportUsage` and encodes the `UsageRecord`. Throws a
 * `BillingError` (`INVALID_ARGUMENT`, naming the field) before anything is changed.
 */
export function encodeUsage(input: unknown, ctx: RecordContext): EncodedRecord {
  if (typeof input !== "object" || input === null) {
    throw BillingError.invalid("usage report", "must be an object");
  }
  if (isMessage(input, UsageRecordSchema)) return encodeRecord(input, ctx);
  const init = input as Partial<Record<keyof UsageInit, unknown>>;
  if (typeof init.apiKey !== "string" || init.apiKey.length === 0) {
    throw BillingError.invalid("apiKey", "must be a non-empty string");
  }
  const module = checkName("module", init.module);
  const model = checkName("model", init.model);
  const usage = checkUsage(init.usage);
  const metadata = checkMetadata(init.metadata);
  const apiKeySha256 = hashApiKey(init.apiKey);
  const now = Date.now();
  return encode(
    create(UsageRecordSchema, {
      id: uuidV7(now),
      apiKeySha256,
      appId: ctx.appIdOf(apiKeySha256),
      module,
      model,
      usage,
      occurredAt: timestampFromMs(now),
      metadata,
      producer: ctx.producer,
    }),
    ctx,
  );
}

/**
 * A `UsageRecord` built with `create()`: its fields are checked like a `UsageInit`'s; an empty
 * `id`, `occurredAt`, `appId` or `producer` is filled in, a set one is kept (so a record replayed
 * from elsewhere keeps its idempotency key and event time).
 */
function encodeRecord(input: UsageRecord, ctx: RecordContext): EncodedRecord {
  if (!HEX64.test(input.apiKeySha256)) {
    throw BillingError.invalid("apiKeySha256", "must be 64 lowercase hex characters");
  }
  if (input.id !== "" && !UUID.test(input.id)) {
    throw BillingError.invalid("id", "must be empty or a lowercase hyphenated UUID");
  }
  checkName("module", input.module);
  checkName("model", input.model);
  const usage = checkUsage(input.usage);
  if (input.metadata !== undefined) checkMetadata(input.metadata);
  const now = Date.now();
  const record = clone(UsageRecordSchema, input); // the caller's message is left as it was
  record.usage = usage;
  if (record.id === "") record.id = uuidV7(now);
  if (record.occurredAt === undefined) record.occurredAt = timestampFromMs(now);
  if (record.appId === "") record.appId = ctx.appIdOf(record.apiKeySha256);
  if (record.producer === "") record.producer = ctx.producer;
  return encode(record, ctx);
}
