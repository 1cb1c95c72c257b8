import { generateKeyPairSync } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BillingError } from "../billing-error.js";
import { publicKeyFingerprint } from "../keys/key-fingerprint.js";
import type { CliIo } from "./cli-io.js";

export const keysKeygenHelp = `billing-sdk keys keygen --out DIR

Writes a new Ed25519 key pair for signing key updates:
  DIR/key-update-private.pem  PKCS#8, mode 0600: for the billing backend (or
                              billing-sdk keys push --signing-key) only
  DIR/key-update-public.pem   SPKI: for every service, as
                              keyUpdatePublicKeys: { "<signer>": <its text> }
Prints the public key's fingerprint (sha256:...), as keys push does for the key
it signs with. Existing files are never overwritten. Exit codes: 0 written, 1 could not write,
2 bad usage.`;

/** The names keygen writes in `--out`. */
const KEY_FILES = {
  private: "key-update-private.pem",
  public: "key-update-public.pem",
} as const;

/** `billing-sdk keys keygen --out DIR`. */
export function keysKeygen(v: { out?: string | undefined }, io: CliIo): number {
  if (v.out === undefined || v.out === "") {
    throw BillingError.invalid("--out", "give the directory to write the key pair to");
  }
  const privatePath = join(v.out, KEY_FILES.private);
  const publicPath = join(v.out, KEY_FILES.public);
  const existing = [privatePath, publicPath].filter((p) => existsSync(p));
  if (existing.length > 0) {
    io.err(`keys keygen: ${existing.join(" and ")} exist already: not overwritten`);
    return 1;
  }
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  try {
    mkdirSync(v.out, { recursive: true, mode: 0o700 });
    // "wx": never overwrite a key; the mode applies at creation (chmod too, whatever the umask).
    writeFileSync(privatePath, privateKey.export({ type: "pkcs8", format: "pem" }), {
      flag: "wx",
      mode: 0o600,
    });
    chmodSync(privatePath, 0o600);
    writeFileSync(publicPath, publicKey.export({ type: "spki", format: "pem" }), {
      flag: "wx",
      mode: 0o644,
    });
  } catch (err) {
    io.err(`keys keygen: ${(err as Error).message}`);
    return 1;
  }
  io.out(`wrote ${privatePath} (mode 0600: keep it secret, with the billing backend only)`);
  io.out(`wrote ${publicPath} (give it to every service: keyUpdatePublicKeys)`);
  // keys push prints the same fingerprint for the key it signs with: the two must match.
  io.out(`public key fingerprint: ${publicKeyFingerprint(publicKey)}`);
  return 0;
}
