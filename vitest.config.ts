import { defineConfig } from "vitest/config";

// Two suites that can run apart, like the Python SDK's --unit / --integration:
// - unit: in-process only (embedded Aedes broker, loopback Connect servers); no broker process.
// - integration: real broker processes (mosquitto, started by the tests on free ports).
// `npm test` runs both with coverage; the thresholds below fail CI when src/ coverage drops.
export default defineConfig({
  test: {
    projects: [
      { test: { name: "unit", include: ["test/unit/**/*.test.ts"], testTimeout: 20_000 } },
      {
        test: {
          name: "integration",
          include: ["test/integration/**/*.test.ts"],
          // The soak test measures the heap after a forced GC.
          execArgv: ["--expose-gc"],
          testTimeout: 60_000,
          hookTimeout: 60_000,
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
