#!/usr/bin/env node
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { BillingError } from "../billing-error.js";
import type { CliIo } from "./cli-io.js";
import { connectionFlags, connectionHelp } from "./connection-flags.js";
import { doctor, doctorHelp } from "./doctor.js";
import { ingest, ingestHelp } from "./ingest.js";
import { keysKeygen, keysKeygenHelp } from "./keys-keygen.js";
import { keysPush, keysPushHelp } from "./keys-push.js";
import { showUsage, showUsageHelp } from "./show-usage.js";
import { tail, tailHelp } from "./tail.js";

const usage = `usage: billing-sdk <command> [options]

commands:
  tail         print usage records (and heartbeats, key updates) as JSON lines
  keys push    publish a signed key-list snapshot from a JSON file
  keys keygen  write an Ed25519 key pair for signing key updates
  doctor       check a broker connection step by step
  ingest       consume usage records into PostgreSQL (the ingest service)
  usage        print the stored usage per app, module and model

Run billing-sdk <command> --help for a command's options.`;

/** Each command (`""`: none given) with its help and its own flags (besides the connection's). */
const commands = {
  "": { help: usage, flags: {} },
  tail: {
    help: tailHelp,
    flags: {
      heartbeats: { type: "boolean" },
      keys: { type: "boolean" },
      count: { type: "string" },
    },
  },
  "keys push": {
    help: keysPushHelp,
    flags: {
      "signing-key": { type: "string" },
      signer: { type: "string" },
      audience: { type: "string" },
      version: { type: "string" },
      retain: { type: "boolean" },
      "insecure-unsigned": { type: "boolean" },
    },
  },
  "keys keygen": { help: keysKeygenHelp, flags: { out: { type: "string" } } },
  doctor: { help: doctorHelp, flags: { "wait-keys": { type: "string" } } },
  ingest: {
    help: ingestHelp,
    flags: {
      postgres: { type: "string" },
      pglite: { type: "string" },
      schema: { type: "string" },
      group: { type: "string" },
      "client-id": { type: "string" },
      "fallback-broker": { type: "string", multiple: true },
      progress: { type: "string" },
      "write-timeout": { type: "string" },
    },
  },
  usage: {
    help: showUsageHelp,
    flags: {
      postgres: { type: "string" },
      pglite: { type: "string" },
      since: { type: "string" },
      schema: { type: "string" },
    },
  },
} as const;

type Command = (typeof commands)[keyof typeof commands];
type Parsed = { values: Record<string, never>; positionals: string[] };

/** What is wrong with a command line that names no known command. */
function unknownCommand(command: string | undefined, sub: string | undefined): string {
  if (command !== "keys") return `billing-sdk: unknown command "${command}"`;
  return sub === undefined || sub.startsWith("-")
    ? "billing-sdk keys: which subcommand?"
    : `billing-sdk keys: unknown subcommand "${sub}"`;
}

/** The flags of `entry` parsed from `args`; undefined (after saying why) when they do not parse. */
function parseFlags(args: string[], entry: Command, io: CliIo): Parsed | undefined {
  try {
    const parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        ...connectionFlags,
        ...(entry.flags as Record<string, { type: "string" | "boolean"; multiple?: boolean }>),
        help: { type: "boolean", short: "h" },
      },
    });
    return { values: parsed.values as Record<string, never>, positionals: parsed.positionals };
  } catch (err) {
    io.err(`${(err as Error).message}\n\n${entry.help}`);
    return undefined;
  }
}

/** Runs the command; an error becomes its message and exit code 2 (bad usage) or 1. */
async function run(command: string, name: string, parsed: Parsed, io: CliIo): Promise<number> {
  const { values } = parsed;
  try {
    if (command === "tail") return await tail(values, io);
    if (name === "keys push") return await keysPush(parsed.positionals[0], values, io);
    if (name === "keys keygen") return keysKeygen(values, io);
    if (command === "ingest") return await ingest(values, io);
    if (command === "usage") return await showUsage(values, io);
    return await doctor(values, io);
  } catch (err) {
    const e = BillingError.from(err);
    io.err(`${command}: ${e.message}`);
    return e.code === "INVALID_ARGUMENT" ? 2 : 1;
  }
}

/** Runs the CLI with `argv` (without node and script); resolves with the exit code. */
export async function main(argv: string[], io: CliIo): Promise<number> {
  const [command, ...rest] = argv;
  if (command === "--help" || command === "-h" || command === "help") {
    io.out(usage);
    return 0;
  }
  const sub = command === "keys" ? rest.shift() : undefined;
  const name = command === "keys" ? `keys ${sub ?? ""}` : command;
  const entry = Object.hasOwn(commands, name ?? "")
    ? commands[(name ?? "") as keyof typeof commands]
    : undefined;
  if (entry === undefined || name === "") {
    io.err(`${unknownCommand(command, sub)}\n\n${usage}`);
    return 2;
  }
  const parsed = parseFlags(rest, entry, io);
  if (parsed === undefined) return 2;
  if (parsed.values.help || command === undefined) {
    const bare = name === "keys keygen" || command === "usage"; // no broker connection
    io.out(bare ? entry.help : `${entry.help}\n\n${connectionHelp}`);
    return command === undefined ? 2 : 0;
  }
  return run(command, name ?? "", parsed, io);
}

// Run when executed (node dist/src/cli/main.js, the npm bin link to it, or `npm run cli`), not
// when imported.
const script = process.argv[1];
if (script !== undefined && realpathSync(script) === fileURLToPath(import.meta.url)) {
  const io: CliIo = {
    out: (l) => process.stdout.write(`${l}\n`),
    err: (l) => process.stderr.write(`${l}\n`),
    onInterrupt: (stop) => {
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    },
  };
  main(process.argv.slice(2), io).then((code) => {
    process.exitCode = code;
  });
}
