// Reading the project's Markdown the way GitHub renders it, for the documentation tests: fenced
// code blocks, headings (outside code blocks), the anchors GitHub gives headings, relative links.

/** One fenced code block: its language tag (`ts`, `bash`, … or "") and its text. */
export interface CodeBlock {
  lang: string;
  code: string;
}

const FENCE = /^```([\w-]*)\n([\s\S]*?)^```$/gm;

/** The fenced code blocks of a Markdown text, in order; with `lang`, only those tagged so. */
export function codeBlocks(text: string, lang?: string): CodeBlock[] {
  const blocks = [...text.matchAll(FENCE)].map((m) => ({
    lang: m[1] as string,
    code: m[2] as string,
  }));
  return lang === undefined ? blocks : blocks.filter((b) => b.lang === lang);
}

/** The text without its fenced code blocks (a `# comment` in a bash block is no heading). */
function prose(text: string): string {
  return text.replace(FENCE, "");
}

/** The ATX headings outside code blocks, in order: level (1–6) and text. */
export function headings(text: string): { level: number; text: string }[] {
  return [...prose(text).matchAll(/^(#{1,6}) +(.+?) *#*$/gm)].map((m) => ({
    level: (m[1] as string).length,
    text: m[2] as string,
  }));
}

/** GitHub's anchor for a heading's text: lower case, punctuation and symbols dropped, spaces as hyphens. */
function githubSlug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/<[^>]*>/g, "")
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc}\- ]/gu, "")
    .replace(/ /g, "-");
}

/** Every anchor a Markdown text has (a repeated heading gets -1, -2, … as on GitHub). */
export function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const h of headings(text)) {
    const base = githubSlug(h.text);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/**
 * The targets of the inline links outside code (`[text](target)`) that are not URLs with a scheme
 * (https:, mailto:): relative paths, with or without `#anchor`, and bare `#anchor`s.
 */
export function relativeLinks(text: string): string[] {
  const outsideCode = prose(text).replace(/`[^`\n]*`/g, "");
  return [...outsideCode.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)]
    .map((m) => m[1] as string)
    .filter((target) => !/^[a-z][a-z0-9+.-]*:/i.test(target));
}

/** A code block's lines without comments (`//` or `#` after a space or at a line start) and blank lines. */
export function withoutComments(block: CodeBlock): string {
  const comment = ["bash", "sh", "yaml", "python"].includes(block.lang)
    ? /(^|\s)#.*$/
    : /(^|\s)\/\/.*$/;
  return block.code
    .split("\n")
    .map((line) => line.replace(comment, "").trimEnd())
    .filter((line) => line.trim() !== "")
    .join("\n");
}
