// What text the SDK accepts, in one place. Text must arrive byte for byte: protobuf encodes
// strings as UTF-8, which cannot carry a lone surrogate (it would become U+FFFD, and two
// different keys would share one fingerprint), so such strings are refused, never replaced.

const wellFormed = String.prototype as unknown as { isWellFormed(this: string): boolean };

/** Whether `s` has no lone surrogate, so its UTF-8 form decodes back to the same string. */
export function isWellFormed(s: string): boolean {
  return wellFormed.isWellFormed.call(s);
}

// C0 controls, DEL and C1 controls.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
// Characters that change how the text around them is shown without being visible: every format
// character (Unicode Cf: bidirectional marks, embeddings, overrides and isolates, U+061C, zero
// width spaces and joiners, the BOM, tag characters, soft hyphen…) and the line and paragraph
// separators.
const INVISIBLE = /[\p{Cf}\p{Zl}\p{Zp}]/u;

/**
 * Why `s` is not a good name (module, model, app id, producer: text shown in dashboards and
 * logs), or undefined when it is: no control, line-separator, bidi or BOM characters, no lone
 * surrogate.
 */
export function nameProblem(s: string): string | undefined {
  if (!isWellFormed(s)) return "must not contain a lone surrogate (invalid UTF-16)";
  if (CONTROL.test(s)) return "must not contain control characters";
  if (INVISIBLE.test(s)) {
    return "must not contain invisible format characters (bidirectional controls, zero-width characters, a BOM) or line separators";
  }
  return undefined;
}

const UNSHOWABLE = new RegExp(`${CONTROL.source}|${INVISIBLE.source}`, "gu");

/**
 * `s` made safe to show to a caller (in an error message, which may reach HTTP headers, logs and
 * web pages): control, line-separator, bidi and BOM characters removed, lone surrogates replaced
 * by U+FFFD, at most `maxChars` code points (text that was cut ends with "…").
 */
export function shownText(s: string, maxChars: number): string {
  // Cut generously first, so that a huge input costs no more than a short one.
  const long = s.length > maxChars * 4;
  let text = (long ? s.slice(0, maxChars * 4) : s).replace(UNSHOWABLE, "");
  if (!isWellFormed(text)) text = text.replace(/[\ud800-\udfff]/gu, "\ufffd");
  if (!long && text.length <= maxChars) return text; // fast path: no code point counting
  const points = Array.from(text);
  if (!long && points.length <= maxChars) return text;
  return `${points.slice(0, maxChars - 1).join("")}…`;
}
