// `node --import ./forbid-otel.mjs`: a module loader hook that makes every import of
// @opentelemetry/* fail, as in a project that did not install the optional peer dependency.
import { register } from "node:module";

const hook = `
export async function resolve(specifier, context, next) {
  if (specifier.startsWith("@opentelemetry/")) throw new Error("forbidden import of " + specifier);
  return next(specifier, context);
}`;
register(`data:text/javascript,${encodeURIComponent(hook)}`);
