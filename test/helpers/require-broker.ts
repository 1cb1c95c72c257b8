import { findMosquitto } from "./mosquitto.js";

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
