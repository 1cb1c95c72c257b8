import type { BrokerSettings } from "./broker-settings.js";

// The PEM text of each `ca` read from a file by the CLI (--ca FILE), and that file: a TLS error
// can then name the file the wrong CA came from. The SDK's own options carry PEM text only.
const files = new Map<string, string>();

/** Remembers that `pem` was read from `file`, so that a TLS error about it can name the file. */
export function noteCaFile(pem: string, file: string): void {
  files.set(pem, file);
}

/** The file `ca` was read from, when the CLI read it; undefined otherwise. */
export function caFileOf(ca: BrokerSettings["ca"]): string | undefined {
  return typeof ca === "string" ? files.get(ca) : undefined;
}
