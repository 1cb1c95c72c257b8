import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { KeyState } from "../../gen/billing/v1/usage_pb.js";
import { hashApiKey, MAX_API_KEY_LENGTH } from "../common/api-key-hash.js";
import { shownText } from "../common/text.js";
import { countDecision, type DecisionOutcome } from "../keys/decision-counts.js";
import type { KeyInfo } from "../keys/key-list.js";
import { admitCall, type RuleRefusal } from "../keys/rule-check.js";
import type { BillingClient } from "../publisher/index.js";
import { apiKeysOf } from "./api-key-headers.js";
import { billingCaller } from "./billing-caller.js";
import type { KeySource } from "./key-source.js";
import { pushedKeySource } from "./pushed-key-source.js";
import { type VerifiedKey, verifyKeySource } from "./verify-key-source.js";

/** The most characters of a blocked key's reason shown to the caller (the rest is cut). */
const MAX_REASON_CHARS = 200;

/** What `onDecision` is told about each call. Never holds the key. */
export interface ApiKeyDecision {
  /**
   * `allowed`, `exempt`, or why it was refused: `missing`, `invalid`, `blocked`, `unavailable`,
   * `expired`, `method_denied`, `rate_limited`, `quota_exhausted`.
   */
  outcome: DecisionOutcome;
  /** The Connect code the call was refused with; undefined when it went on. */
  code: Code | undefined;
  /** `"package.Service/Method"`. */
  method: string;
  /** Time the check took, in milliseconds. */
  latencyMs: number;
}

/** Options of `requireApiKey()`. */
export interface RequireApiKeyOptions {
  /**
   * Where the key list comes from. Default: the process-wide `BillingClient` at call time
   * (`getBillingClient()`); with none and no `verify`, calls are refused `Unavailable`.
   */
  client?: BillingClient | undefined;
  /**
   * Checks keys elsewhere instead of the pushed key list: resolve `null` for an unknown key, or
   * `{ appId, state?, reason? }` (`state` defaults to ACTIVE). Answers are cached (see `cache`);
   * one that throws or takes longer than `verifyTimeoutMs` refuses the call `Unavailable`.
   * Default: none (use the key list).
   */
  verify?: ((apiKey: string) => Promise<VerifiedKey | null>) | undefined;
  /**
   * Cache of `verify`'s answers. `ttlMs` bounds how long a revoked key still passes (0: ask on
   * every call). Valid and unknown keys are kept apart, at most `maxEntries` of each, least
   * recently used out first. A key's rate-limit and quota state is kept apart from its answer,
   * for at most `max(maxEntries, 10_000)` keys with rules (answered active and not expired: a
   * refused key pushes none out), so every `ttlMs` keeps the limits.
   * Times are ms ≥ 0, `maxEntries` a positive integer (else `INVALID_ARGUMENT`).
   * Default: `{ ttlMs: 60_000, negativeTtlMs: 5_000, maxEntries: 10_000 }`.
   */
  cache?:
    | {
        /** How long a valid key's answer is kept (0: ask on every call). Default: `60_000` ms. */
        ttlMs?: number;
        /** How long an unknown key's answer (`null`) is kept. Default: `5_000` ms. */
        negativeTtlMs?: number;
        /** The most answers kept, of valid and of unknown keys each. Default: `10_000`. */
        maxEntries?: number;
      }
    | undefined;
  /** Deadline of one `verify` call. Default: `2_000` ms. */
  verifyTimeoutMs?: number | undefined;
  /** Headers that carry the key as-is. Default: `["api-key", "apikey"]` (the Python SDK's). */
  headers?: string[] | undefined;
  /** Also accept `authorization: Bearer <key>` (scheme case-insensitive). Default: `true`. */
  bearer?: boolean | undefined;
  /**
   * Methods that need no key (health checks, reflection): `"package.Service/Method"` names, or a
   * predicate on that name. Default: none.
   */
  exempt?: readonly string[] | ((method: string) => boolean) | undefined;
  /**
   * The module a method bills (`"pkg.Service/Method"` → e.g. `"tts"`), or undefined when it is
   * not known. Given, a call is refused only by its own module's quotas and usage rate limits;
   * without it, any exhausted quota or usage limit of the key refuses every call. Must not throw.
   * Default: none.
   */
  moduleOf?: ((method: string) => string | undefined) | undefined;
  /** Told of every decision, for metrics. Must not throw (errors are ignored). Default: none. */
  onDecision?: ((decision: ApiKeyDecision) => void) | undefined;
}

/** The Connect error of a call the key's rules refuse. */
function ruleError(r: RuleRefusal, method: string): ConnectError {
  switch (r.outcome) {
    case "expired":
      return new ConnectError("API key expired", Code.Unauthenticated);
    case "method_denied":
      return new ConnectError(`API key may not call ${method}`, Code.PermissionDenied);
    case "rate_limited":
      // No ":" "," or "/" in the message: grpc-js shows those percent-encoded (it decodes with decodeURI).
      // Error metadata goes out as response headers (Connect unary) or trailers (gRPC, streams).
      return new ConnectError(
        `rate limit exceeded (retry after ${r.retryAfterSeconds} s)`,
        Code.ResourceExhausted,
        { "retry-after": String(r.retryAfterSeconds) },
      );
    case "quota_exhausted":
      return new ConnectError(`quota exhausted for ${r.module}`, Code.ResourceExhausted);
  }
}

function keySourceOf(options: RequireApiKeyOptions): KeySource {
  if (options.verify === undefined) return pushedKeySource(options.client);
  return verifyKeySource(options.verify, {
    ttlMs: options.cache?.ttlMs ?? 60_000,
    negativeTtlMs: options.cache?.negativeTtlMs ?? 5_000,
    maxEntries: options.cache?.maxEntries ?? 10_000,
    timeoutMs: options.verifyTimeoutMs ?? 2_000,
  });
}

/**
 * A Connect interceptor that refuses every RPC without a valid API key before its handler runs,
 * the same over Connect, gRPC and gRPC-web:
 * missing, unknown or over-long (> 1,024 characters) key → `Unauthenticated`; blocked key →
 * `PermissionDenied` (with the reason, control characters removed, at most 200 characters); key
 * list not loaded yet or stale (`maxKeyListAgeMs`), no client and no verifier, or a failing
 * verifier → `Unavailable` (fail closed). Then the key's rules, in this order: expired →
 * `Unauthenticated` "API key expired"; method not allowed → `PermissionDenied` "API key may not call
 * <method>"; a rate limit at its limit → `ResourceExhausted` with a `retry-after` header (seconds);
 * a quota at or below 0 → `ResourceExhausted` "quota exhausted for <module>". Streams are checked
 * once, before the first message.
 * The verified caller goes into the context values under `billingCaller`.
 */
export function requireApiKey(options: RequireApiKeyOptions = {}): Interceptor {
  const headers = (options.headers ?? ["api-key", "apikey"]).map((h) => h.toLowerCase());
  const bearer = options.bearer ?? true;
  const exempt = options.exempt;
  const exemptNames = new Set(typeof exempt === "function" ? [] : (exempt ?? []));
  const isExempt = typeof exempt === "function" ? exempt : (m: string) => exemptNames.has(m);
  const source = keySourceOf(options);
  const onDecision = options.onDecision;
  const moduleOf = options.moduleOf;

  return (next) => async (req) => {
    const method = `${req.service.typeName}/${req.method.name}`;
    const started = performance.now();
    const decide = (outcome: DecisionOutcome, code: Code | undefined) => {
      countDecision(outcome);
      if (onDecision === undefined) return;
      try {
        onDecision({ outcome, code, method, latencyMs: performance.now() - started });
      } catch {
        // metrics must not break calls
      }
    };
    const refuse = (outcome: DecisionOutcome, code: Code, message: string) => {
      decide(outcome, code);
      return new ConnectError(message, code);
    };

    if (isExempt(method)) {
      decide("exempt", undefined);
      return next(req);
    }
    const keys = apiKeysOf(req.header, headers, bearer);
    if (keys.size === 0) throw refuse("missing", Code.Unauthenticated, "missing API key");
    if (keys.size > 1) {
      throw refuse("invalid", Code.Unauthenticated, "invalid API key: more than one key sent");
    }
    if (!source.loaded()) {
      throw refuse("unavailable", Code.Unavailable, "API key check unavailable");
    }
    const apiKey = keys.values().next().value as string;
    // A key longer than any real one is refused unhashed: no caller makes every check hash MBs.
    if (apiKey.length > MAX_API_KEY_LENGTH) {
      throw refuse("invalid", Code.Unauthenticated, "invalid API key");
    }
    const apiKeySha256 = hashApiKey(apiKey);
    let info: KeyInfo | undefined;
    try {
      const found = source.lookup(apiKeySha256, apiKey);
      info = found instanceof Promise ? await found : found;
    } catch {
      throw refuse("unavailable", Code.Unavailable, "API key check unavailable");
    }
    if (info === undefined) throw refuse("invalid", Code.Unauthenticated, "invalid API key");
    if (info.state === KeyState.BLOCKED) {
      // The reason comes from the backend or a verifier: shown without control characters, cut.
      const reason = shownText(info.reason, MAX_REASON_CHARS);
      throw refuse(
        "blocked",
        Code.PermissionDenied,
        reason === "" ? "API key blocked" : `API key blocked: ${reason}`,
      );
    }
    if (info.state !== KeyState.ACTIVE) {
      throw refuse("invalid", Code.Unauthenticated, "invalid API key");
    }
    if (info.rules !== undefined) {
      // Synchronous from the check to the debit: concurrent calls cannot share the last token.
      const refused = admitCall(info.rules, method, moduleOf?.(method));
      if (refused !== undefined) {
        const err = ruleError(refused, method);
        decide(refused.outcome, err.code);
        throw err;
      }
    }
    req.contextValues.set(billingCaller, { apiKeySha256, appId: info.appId, state: info.state });
    decide("allowed", undefined);
    return next(req);
  };
}
