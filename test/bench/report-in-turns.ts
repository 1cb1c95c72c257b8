// The benches' load: reportUsage calls made as concurrent requests of a busy service make them,
// `perTurn` per event-loop turn, each with the same small record.

/** The metadata every bench record carries. */
export const BENCH_METADATA = { prompt_tokens: 100, completion_tokens: 50, temperature: 0.7 };

interface Reporter {
  reportUsage(usage: {
    apiKey: string;
    module: string;
    model: string;
    usage: number;
    metadata: typeof BENCH_METADATA;
  }): Promise<string>;
}

/**
 * Reports `records` records, `perTurn` concurrent calls per event-loop turn, each turn's calls
 * awaited before the next; with `callTimes`, pushes each call's synchronous time (ms).
 */
export async function reportInTurns(
  client: Reporter,
  records: number,
  perTurn = 100,
  callTimes?: number[],
): Promise<void> {
  for (let i = 0; i < records; i += perTurn) {
    const calls: Array<Promise<string>> = [];
    for (let j = 0; j < perTurn; j++) {
      const p0 = callTimes === undefined ? 0 : performance.now();
      calls.push(
        client.reportUsage({
          apiKey: "bench-key",
          module: "llm",
          model: "gpt-4",
          usage: 150,
          metadata: BENCH_METADATA,
        }),
      );
      callTimes?.push(performance.now() - p0);
    }
    await Promise.all(calls);
    await new Promise<void>((r) => setImmediate(r));
  }
}
