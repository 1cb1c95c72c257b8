import { generateKeyPairSync } from "node:crypto";
import forge from "node-forge";

/** PEM material for one TLS test setup: a CA, and a server certificate it signed. */
export interface TestPki {
  ca: string;
  serverCert: string;
  serverKey: string;
}

// Node makes the RSA key (fast, native); node-forge builds and signs the certificates.
function keyPair() {
  const { publicKey, privateKey } = generateKeyPairSync("rsa", {
    modulusLength: 2048,
    publicKeyEncoding: { type: "spki", format: "pem" },
    privateKeyEncoding: { type: "pkcs8", format: "pem" },
  });
  return {
    publicKey: forge.pki.publicKeyFromPem(publicKey),
    privateKey: forge.pki.privateKeyFromPem(privateKey),
  };
}

function serial(): string {
  return forge.util.bytesToHex(forge.random.getBytesSync(8)).replace(/^[89a-f]/, "1");
}

/** An unsigned certificate for `publicKey`, valid from an hour ago for a day. */
function newCertificate(publicKey: forge.pki.PublicKey): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  cert.serialNumber = serial();
  cert.validity.notBefore = new Date(Date.now() - 3600_000);
  cert.validity.notAfter = new Date(Date.now() + 86_400_000);
  return cert;
}

/** A commonName attribute; `utf8`: a UTF8String (any text, as a hostile certificate may carry). */
const commonName = (value: string, utf8 = false): forge.pki.CertificateField[] => [
  utf8
    ? // forge encodes it; its types call the tag a Class
      { name: "commonName", value, valueTagClass: forge.asn1.Type.UTF8 as never }
    : { name: "commonName", value },
];

/**
 * A throwaway CA and a server certificate for `names` (DNS names and IP addresses) signed by it:
 * real X.509, made in-process (no openssl binary needed), valid from an hour ago for a day.
 * `commonNames` replaces the CA's and the server's common names (default: a random CA name, and
 * the first of `names`).
 */
export function makePki(
  names: string[] = ["localhost", "127.0.0.1", "::1"],
  commonNames: { ca?: string; server?: string } = {},
): TestPki {
  const caKeys = keyPair();
  const ca = newCertificate(caKeys.publicKey);
  const caName = commonName(commonNames.ca ?? `billing-sdk test CA ${serial()}`, !!commonNames.ca);
  ca.setSubject(caName);
  ca.setIssuer(caName);
  ca.setExtensions([
    { name: "basicConstraints", cA: true, critical: true },
    { name: "keyUsage", keyCertSign: true, cRLSign: true, critical: true },
    { name: "subjectKeyIdentifier" },
  ]);
  ca.sign(caKeys.privateKey, forge.md.sha256.create());

  const serverKeys = keyPair();
  const cert = newCertificate(serverKeys.publicKey);
  cert.setSubject(commonName(commonNames.server ?? names[0] ?? "localhost", !!commonNames.server));
  cert.setIssuer(caName);
  cert.setExtensions([
    { name: "basicConstraints", cA: false },
    { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
    { name: "extKeyUsage", serverAuth: true },
    {
      name: "subjectAltName",
      altNames: names.map((n) =>
        /^[\d.]+$|:/.test(n) ? { type: 7, ip: n } : { type: 2, value: n },
      ),
    },
  ]);
  cert.sign(caKeys.privateKey, forge.md.sha256.create());
  return {
    ca: forge.pki.certificateToPem(ca),
    serverCert: forge.pki.certificateToPem(cert),
    serverKey: forge.pki.privateKeyToPem(serverKeys.privateKey),
  };
}
