import { X509Certificate } from "node:crypto";
import { type DetailedPeerCertificate, connect as tlsConnect } from "node:tls";
import { withDeadline } from "../common/deadline.js";
import { shownText } from "../common/text.js";
import { type BrokerSettings, tlsOptions } from "../mqtt/broker-settings.js";

/**
 * A name read from a certificate, quoted, safe to print: the peer may not be verified (and even
 * a CA's names are text anyone could have put there), so control, bidi and other invisible
 * characters are removed (`shownText`) and a long one is cut.
 */
function shownCertName(name: string): string {
  return JSON.stringify(shownText(name, 200));
}

/** A certificate's common name, quoted and made safe to print ("?" when it has none). */
export const cn = (name: { CN?: string | string[] } | undefined) =>
  shownCertName(Array.isArray(name?.CN) ? name.CN.join(", ") : (name?.CN ?? "?"));

/** The certificates the broker sent, its own first: subject and issuer, quoted. */
async function presentedChain(
  s: BrokerSettings,
): Promise<Array<{ subject: string; issuer: string }>> {
  let socket: ReturnType<typeof tlsConnect> | undefined;
  const chain = new Promise<Array<{ subject: string; issuer: string }>>((resolve, reject) => {
    // Only to read the chain the broker sends, after the verified handshake failed: nothing is
    // sent on this connection, no client certificate is offered to the unverified peer, and it
    // is destroyed at once.
    const { cert: _cert, key: _key, ...verified } = tlsOptions(s);
    socket = tlsConnect({ ...verified, rejectUnauthorized: false });
    socket.once("secureConnect", () => {
      const certs: Array<{ subject: string; issuer: string }> = [];
      const seen = new Set<string>();
      let c: DetailedPeerCertificate | undefined = socket?.getPeerCertificate(true);
      while (c?.raw !== undefined && !seen.has(c.fingerprint256)) {
        seen.add(c.fingerprint256);
        certs.push({ subject: cn(c.subject), issuer: cn(c.issuer) });
        c = c.issuerCertificate;
      }
      socket?.destroy();
      resolve(certs);
    });
    socket.once("error", reject);
  });
  return withDeadline(chain, s.connectTimeoutMs, "TLS: no answer", () => socket?.destroy());
}

/** The subjects of the CA certificates in `ca` (PEM text, one or several). */
function caSubjects(ca: BrokerSettings["ca"]): string[] {
  const texts = (Array.isArray(ca) ? ca : ca === undefined ? [] : [ca]).map(String);
  const blocks = texts.flatMap(
    (t) => t.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [],
  );
  return blocks.map((pem) => {
    try {
      const subject = new X509Certificate(pem).subject;
      const name = /(?:^|\n)CN=(.*)/.exec(subject)?.[1];
      return shownCertName(name ?? subject.replaceAll("\n", ", "));
    } catch {
      return "(not a readable certificate)";
    }
  });
}

/**
 * For `billing-sdk doctor` after the broker's certificate failed verification: who issued the
 * certificates the broker presents, and which CA `--ca` holds, one line each.
 */
export async function explainUntrustedChain(
  s: BrokerSettings,
  caFlag: string | undefined,
): Promise<string[]> {
  const lines: string[] = [];
  let root: string | undefined;
  try {
    const chain = await presentedChain(s);
    root = chain.at(-1)?.issuer;
    lines.push(
      `the broker presents ${chain.map((c) => `${c.subject} issued by ${c.issuer}`).join(", then ")}`,
    );
  } catch (err) {
    lines.push(`the broker's certificates could not be read: ${(err as Error).message}`);
  }
  const wanted = root === undefined ? "the CA that issued it" : `the CA ${root}`;
  if (s.ca === undefined) {
    lines.push(`no --ca given, so the system CAs were used: pass ${wanted} with --ca FILE`);
  } else {
    const subjects = caSubjects(s.ca);
    lines.push(
      `${caFlag === undefined ? "`ca`" : `--ca ${caFlag}`} holds ${
        subjects.length === 0 ? "no certificate" : subjects.join(", ")
      }, which did not sign that chain: pass ${wanted} (with any intermediate CA)`,
    );
  }
  return lines;
}
