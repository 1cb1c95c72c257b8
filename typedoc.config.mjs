// TypeDoc: the API reference (npm run docs, into docs/api/) from the doc comments of the package's
// exports; npm run docs:check (in npm test) fails on an export without a doc comment, a broken
// {@link}, or a public type that names an unexported one.
import { OptionDefaults } from "typedoc";

/** @type {Partial<import("typedoc").TypeDocOptions>} */
export default {
  entryPoints: [
    "src/index.ts",
    "src/spool/index.ts",
    "src/consumer/index.ts",
    "src/postgres/index.ts",
    "src/otel/index.ts",
    "gen/billing/v1/usage_pb.ts",
  ],
  tsconfig: "tsconfig.build.json",
  out: "docs/api",
  name: "billing-sdk",
  readme: "none",
  excludePrivate: true,
  excludeInternal: true,
  // protoc-gen-es marks generated declarations with @generated.
  blockTags: [...OptionDefaults.blockTags, "@generated"],
  // The repository has no public remote to link each declaration's source line to.
  disableSources: true,
  validation: { notExported: true, invalidLink: true, notDocumented: true },
  treatWarningsAsErrors: true,
};
