// `node --require ./without-pglite.cjs`: every require() of @electric-sql/pglite fails the way it
// does in a project that did not install that optional peer dependency (MODULE_NOT_FOUND).
const Module = require("node:module");

const resolveFilename = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  if (request === "@electric-sql/pglite" || request.startsWith("@electric-sql/pglite/")) {
    const err = new Error(`Cannot find module '${request}'`);
    err.code = "MODULE_NOT_FOUND";
    throw err;
  }
  return resolveFilename.call(this, request, ...rest);
};
