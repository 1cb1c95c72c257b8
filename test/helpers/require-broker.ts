import { findMosquitto } from "./mosquitto.js";
import { findNatsServer } from "./nats-server.js";
import { findPostgresBin } from "./postgres.js";

/**
 * Whether the real-broker suite can run. Without mosquitto it is skipped with a visible
 * message, unless BILLING_SDK_REQUIRE_BROKERS=1 (set by .ci/run) makes that a failure.
 */
export function mosquittoAvailable(): boolean {
  if (findMosquitto() !== undefined) return true;
  if (process.env.BILLING_SDK_REQUIRE_BROKERS === "1") {
    throw new Error("mosquitto is not installed and BILLING_SDK_REQUIRE_BROKERS=1");
  }
  console.warn(
    "SKIPPING real-broker tests: mosquitto is not installed (apt-get install mosquitto)",
  );
  return false;
}

/** The same for nats-server (its MQTT gateway is one column of the broker matrix). */
export function natsAvailable(): boolean {
  if (findNatsServer() !== undefined) return true;
  if (process.env.BILLING_SDK_REQUIRE_BROKERS === "1") {
    throw new Error("nats-server is not installed and BILLING_SDK_REQUIRE_BROKERS=1");
  }
  console.warn(
    "SKIPPING NATS broker tests: nats-server is not installed (apt-get install nats-server)",
  );
  return false;
}

/** The same for PostgreSQL (Debian's postgresql package: initdb and pg_ctl). */
export function postgresAvailable(): boolean {
  if (findPostgresBin() !== undefined) return true;
  if (process.env.BILLING_SDK_REQUIRE_BROKERS === "1") {
    throw new Error("PostgreSQL is not installed and BILLING_SDK_REQUIRE_BROKERS=1");
  }
  console.warn(
    "SKIPPING PostgreSQL tests: PostgreSQL is not installed (apt-get install postgresql)",
  );
  return false;
}
