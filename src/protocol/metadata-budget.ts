import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import { BillingError } from "../billing-error.js";
import { isWellFormed } from "../common/text.js";

const MAX_DEPTH = 32;
const MAX_VALUES = 10_000;

function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * Walks `metadata` once, counting a lower bound of the bytes its encoding will take, and refuses
 * it as soon as that bound passes what the record has room for: a 100 KB string referenced
 * 9,000 times is refused after its first reference, in microseconds, before anything is encoded.
 *
 * The bound: a string takes at least one UTF-8 byte per UTF-16 unit, plus 2 bytes of tag and
 * length; a number 9 + 2; a boolean or null 2 + 2; a nested list or object 2 (Struct and Value
 * framing). It never overestimates, so a record that fits is never refused; the exact size is
 * checked after encoding. A cycle shows up as nesting past 32 levels, and at most 10,000 values
 * are visited.
 *
 * `check` returns a plain copy of what it checked, and only that copy is encoded: a getter or a
 * Proxy that answers differently on a second read cannot slip past the checks.
 */
export class MetadataBudget {
  private left: number;
  private values = MAX_VALUES;
  /** The path to the value being checked, as segments: joined only for an error message. */
  private readonly path: Array<string | number> = [];

  constructor(
    bytes: number,
    private readonly maxRecordBytes: number,
  ) {
    this.left = bytes;
  }

  check(metadata: object): JsonObject {
    return this.walk(metadata, 0) as JsonObject;
  }

  private invalid(message: string): BillingError {
    const field = this.path.map((p) => (typeof p === "number" ? `[${p}]` : `.${p}`)).join("");
    return BillingError.invalid(`metadata${field}`, message);
  }

  private spend(bytes: number): void {
    this.left -= bytes;
    if (this.left < 0) {
      throw this.invalid(
        `the record does not fit maxRecordBytes (${this.maxRecordBytes}): metadata is too large`,
      );
    }
  }

  private text(s: string, what: string): void {
    this.spend(s.length + 2); // before scanning it: a huge string costs nothing to refuse
    if (!isWellFormed(s)) {
      throw this.invalid(`${what} must not contain a lone surrogate (invalid UTF-16)`);
    }
    // PostgreSQL's text and jsonb cannot hold U+0000: the backend could not store the record.
    if (s.includes("\u0000")) throw this.invalid(`${what} must not contain U+0000 (NUL)`);
  }

  private walk(value: unknown, depth: number): JsonValue {
    if (--this.values < 0) {
      throw BillingError.invalid("metadata", `has more than ${MAX_VALUES} values`);
    }
    switch (typeof value) {
      case "string":
        this.text(value, "a string");
        return value;
      case "boolean":
        this.spend(4);
        return value;
      case "number":
        if (!Number.isFinite(value)) throw this.invalid("must be a finite number");
        this.spend(11);
        return value;
      case "object": {
        if (value === null) {
          this.spend(4);
          return null;
        }
        if (depth >= MAX_DEPTH) {
          throw this.invalid(`nests deeper than ${MAX_DEPTH} levels (or is a cycle)`);
        }
        this.spend(2);
        const path = this.path;
        if (Array.isArray(value)) {
          const list: JsonValue[] = [];
          for (let i = 0; i < value.length; i++) {
            path.push(i);
            list.push(this.walk(value[i], depth + 1));
            path.pop();
          }
          return list;
        }
        if (!isPlainObject(value)) {
          throw this.invalid("must be a plain object, not a class instance");
        }
        if (Object.getOwnPropertySymbols(value).length > 0) {
          throw this.invalid("must not have symbol keys");
        }
        const copy: JsonObject = {};
        for (const key in value) {
          if (!Object.hasOwn(value, key)) continue;
          path.push(key);
          this.text(key, "a key");
          const v = this.walk((value as Record<string, unknown>)[key], depth + 1);
          // An own "__proto__" key stays a key (plain assignment would set the prototype).
          if (key === "__proto__") {
            Object.defineProperty(copy, key, { value: v, enumerable: true, writable: true });
          } else copy[key] = v;
          path.pop();
        }
        return copy;
      }
      default:
        // undefined, function, symbol, bigint
        throw this.invalid(`must be JSON-like, not ${typeof value}`);
    }
  }
}
