import { defineConfig } from "vitest/config";

// Two suites that can run apart, like the Python SDK's --unit / --integration:
// - unit: in-process only (embedded Aedes broker, loopback Connect servers); no broker process.
// - integration: real broker processes (mosquitto, started by the tests on free ports).
// - integration-faults: the ingest fault runs (50,000 records through killed processes, a
//   three-node NATS cluster, PostgreSQL): many processes at once, so they run after the others
//   (groupOrder 1) instead of beside timing-sensitive tests. `npm run test:integration` runs both.
// Tests mirror src/ (test/unit/<folder>/…, test/integration/<folder>/…). Regressions that must
// stay are named by their symptom in test/regression/: `<symptom>.test.ts` runs with the unit
// suite, `<symptom>.integration.test.ts` (a real broker) with the integration suite.
// `npm test` runs all with coverage; the thresholds below fail CI when src/ coverage drops.
const integration = {
  // The soak test measures the heap after a forced GC.
  execArgv: ["--expose-gc"],
  testTimeout: 60_000,
  hookTimeout: 60_000,
};
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["test/unit/**/*.test.ts", "test/regression/**/*.test.ts"],
          exclude: ["test/regression/**/*.integration.test.ts"],
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: "integration",
          include: ["test/integration/**/*.test.ts", "test/regression/**/*.integration.test.ts"],
          exclude: ["test/integration/faults/**"],
          ...integration,
        },
      },
      {
        test: {
          name: "integration-faults",
          include: ["test/integration/faults/**/*.test.ts"],
          sequence: { groupOrder: 1 },
          ...integration,
        },
      },
    ],
    coverage: {
      provider: "v8",
      include: ["src/**/*.ts"],
      reporter: ["text-summary", "text"],
      thresholds: { lines: 90 },
    },
  },
});
