// The dependency rules of src/ (npm run lint:deps). Layers, lowest first; a folder imports only
// folders of lower layers, or, in its own layer, another folder's index.ts. src/index.ts (the
// core's public API) is on top and nothing imports it. No circles, type-only imports included.
//
//   gen < billing-error.ts < common < protocol < keys < mqtt | publisher | interceptor
//     < spool < consumer < postgres < otel | serve < cli
//
// The backend's side (consumer, postgres, serve) never loads the producer's (publisher,
// interceptor); inside publisher/, the parts (pipeline, key-sync, outbox) do not import each
// other or the client that composes them.

/** @type {string[][]} Each layer's folders (or files) under the repository root. */
const layers = [
  ["gen"],
  ["src/billing-error.ts"],
  ["src/common"],
  ["src/protocol"],
  ["src/keys"],
  ["src/mqtt", "src/publisher", "src/interceptor"],
  ["src/spool"],
  ["src/consumer"],
  ["src/postgres"],
  ["src/otel", "src/serve"],
  ["src/cli"],
];

const regexText = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const under = (p) => (p.endsWith(".ts") ? `^${regexText(p)}$` : `^${regexText(p)}/`);
const any = (paths) => paths.map(under).join("|");

const layerRules = layers.flatMap((layer, i) => {
  const higher = layers.slice(i + 1).flat();
  return layer.flatMap((member) => {
    const name = member.replace(/^src\//, "").replace(/\.ts$/, "");
    const peers = layer.filter((p) => p !== member);
    const rules = [];
    if (higher.length > 0) {
      rules.push({
        name: `${name}-imports-only-lower-layers`,
        comment: `${member} is below ${higher.join(", ")}: it must not import them`,
        severity: "error",
        from: { path: under(member) },
        to: { path: any(higher) },
      });
    }
    if (peers.length > 0) {
      rules.push({
        name: `${name}-imports-peers-by-index`,
        comment: `${member} imports ${peers.join(", ")} (its own layer) only through their index.ts`,
        severity: "error",
        from: { path: under(member) },
        to: {
          path: any(peers),
          pathNot: peers.map((p) => `^${regexText(p)}/index\\.ts$`).join("|"),
        },
      });
    }
    return rules;
  });
});

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: "no-circular",
      comment: "no file imports itself through others",
      severity: "error",
      from: {},
      to: { circular: true },
    },
    ...layerRules,
    {
      name: "nothing-imports-the-public-index",
      comment: "src/index.ts re-exports the core's API; inside src/ import the file itself",
      severity: "error",
      from: { path: "^src/" },
      to: { path: "^src/index\\.ts$" },
    },
    {
      name: "backend-never-loads-the-producer",
      comment: "consumer, postgres and serve run without the publisher or the interceptor",
      severity: "error",
      from: { path: "^src/(consumer|postgres|serve)/" },
      to: { path: "^src/(publisher|interceptor)/" },
    },
    {
      name: "publisher-parts-stay-apart",
      comment:
        "publisher/pipeline, key-sync and outbox use only the publisher's core files (and lower layers): the client composes them",
      severity: "error",
      from: { path: "^src/publisher/(pipeline|key-sync|outbox)/" },
      to: {
        path: "^src/publisher/(client|pipeline|key-sync|outbox)/",
        pathNot: "^src/publisher/$1/",
      },
    },
    {
      name: "publisher-core-below-its-parts",
      comment: "the publisher's core files (record-spool.ts, pending-record.ts…) import no part",
      severity: "error",
      from: { path: "^src/publisher/[^/]+\\.ts$", pathNot: "^src/publisher/index\\.ts$" },
      to: { path: "^src/publisher/(client|pipeline|key-sync|outbox)/" },
    },
    {
      name: "src-not-to-test",
      severity: "error",
      from: { path: "^src/" },
      to: { path: "^test/" },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: { extensions: [".ts", ".js"] },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
