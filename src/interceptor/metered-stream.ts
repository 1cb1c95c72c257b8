/**
 * For a server-streaming handler that bills per message: yields `messages` and, when the stream
 * ends — finished, failed, or cancelled by the client — calls `bill(sent)` once with the number
 * of messages that went out. A message counts once the framework has taken it and asked for the
 * next one (it was written), so a client that aborts after 3 of 10 messages is billed for 3.
 * What `bill` returns is awaited; if it rejects, the rejection ends the stream (for a cancelled
 * call nobody sees it: report failures inside `bill`).
 *
 * ```ts
 * async *generate(req, ctx) {
 *   yield* meteredStream(tokens(req), (sent) =>
 *     reportUsageFor(ctx, { module: "llm", model: "m", usage: sent }));
 * }
 * ```
 */
export async function* meteredStream<T>(
  messages: AsyncIterable<T> | Iterable<T>,
  bill: (sent: number) => unknown,
): AsyncGenerator<T, void, undefined> {
  let sent = 0;
  try {
    for await (const m of messages) {
      yield m;
      sent++;
    }
  } finally {
    await bill(sent);
  }
}
