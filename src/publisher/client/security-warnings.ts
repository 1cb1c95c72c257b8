import { isIP } from "node:net";
import { brokerList } from "../../mqtt/index.js";
import type { ResolvedOptions } from "./options.js";

/** Whether `host` names this machine's loopback interface (traffic to it never leaves the host). */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, "");
  if (h === "localhost") return true; // not *.localhost: such names may go to DNS
  if (isIP(h) === 4) return h.startsWith("127.");
  if (h === "::1") return true;
  return /^::ffff:127\./.test(h);
}

/** Warnings the options deserve, logged once when the client is made. */
export function securityWarnings(o: ResolvedOptions): string[] {
  const warnings: string[] = [];
  if (o.tls && o.dangerouslyDisableTlsVerification) {
    warnings.push(
      "TLS certificate verification is OFF (dangerouslyDisableTlsVerification): anyone on the " +
        "network path can read and forge billing traffic. Never use this in production.",
    );
  }
  if (o.insecureAcceptUnsignedKeyUpdates) {
    warnings.push(
      "unsigned key updates are accepted (insecureAcceptUnsignedKeyUpdates): anyone who may " +
        "publish on the key-update topic decides which API keys pass. Never use this in production.",
    );
  }
  const remote = brokerList(o).filter((b) => !isLoopback(b.host));
  if (!o.tls && o.password !== undefined && remote.length > 0) {
    warnings.push(
      `tls: false with a password: the password and all billing traffic cross the network to ${remote
        .map((b) => `${b.host}:${b.port}`)
        .join(", ")} in clear text. Use TLS (the default) for any broker that is not on loopback.`,
    );
  }
  return warnings;
}
