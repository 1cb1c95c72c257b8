import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type KeyStatus, QuotaSchema, RateLimitSchema } from "../../gen/billing/v1/usage_pb.js";
import { BillingError } from "../billing-error.js";
import { keyRulesProblem } from "../keys/key-rules.js";

type Rules = Pick<KeyStatus, "expiresAt" | "allowedMethods" | "rateLimits" | "quotas">;

function integer(field: string, value: unknown): bigint {
  if (typeof value === "number" && Number.isSafeInteger(value)) return BigInt(value);
  if (typeof value === "string" && /^-?[0-9]{1,20}$/.test(value)) return BigInt(value);
  throw BillingError.invalid(field, "must be an integer (a number, or a string of digits)");
}

function list(field: string, value: unknown): unknown[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw BillingError.invalid(field, "must be an array");
  return value;
}

/**
 * The rules of one entry of a keys file (issue 14), checked as a client checks them:
 * `"expiresAt"` (ISO 8601 text or ms since the epoch), `"allowedMethods"` (`["pkg.Service/Method",
 * "pkg.Service/*"]`), `"rateLimits"` (`[{"limit", "windowSeconds", "module"?}]`) and `"quotas"`
 * (`[{"module", "remaining"}]`). Throws `INVALID_ARGUMENT` naming the field under `at`.
 */
export function keyRulesOfJson(e: Record<string, unknown>, at: string): Rules {
  let expiresAt: KeyStatus["expiresAt"];
  if (e.expiresAt !== undefined) {
    const ms = typeof e.expiresAt === "number" ? e.expiresAt : Date.parse(String(e.expiresAt));
    if (!Number.isFinite(ms) || !Number.isInteger(ms)) {
      throw BillingError.invalid(`${at}.expiresAt`, "must be ISO 8601 text or ms since the epoch");
    }
    expiresAt = timestampFromMs(ms);
  }
  const allowedMethods = list(`${at}.allowedMethods`, e.allowedMethods).map((m, i) => {
    if (typeof m !== "string")
      throw BillingError.invalid(`${at}.allowedMethods[${i}]`, "must be text");
    return m;
  });
  const rateLimits = list(`${at}.rateLimits`, e.rateLimits).map((x, i) => {
    const r = (x ?? {}) as Record<string, unknown>;
    const f = `${at}.rateLimits[${i}]`;
    return create(RateLimitSchema, {
      limit: integer(`${f}.limit`, r.limit),
      windowSeconds: Number(integer(`${f}.windowSeconds`, r.windowSeconds)),
      module: typeof r.module === "string" ? r.module : "",
    });
  });
  const quotas = list(`${at}.quotas`, e.quotas).map((x, i) => {
    const q = (x ?? {}) as Record<string, unknown>;
    return create(QuotaSchema, {
      module: typeof q.module === "string" ? q.module : "",
      remaining: integer(`${at}.quotas[${i}].remaining`, q.remaining),
    });
  });
  const rules = { expiresAt, allowedMethods, rateLimits, quotas };
  const problem = keyRulesProblem(rules);
  if (problem !== undefined) throw BillingError.invalid(`${at}.${problem.field}`, problem.problem);
  return rules;
}
