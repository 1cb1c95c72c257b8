/** Options of `meteredStream`. */
export interface MeteredStreamOptions {
  /**
   * The call's signal (`ctx.signal`). When it aborts (the client cancelled, the deadline passed),
   * the stream is billed at once with what went out and the source is told to stop (`return()`,
   * not awaited): a source stalled on a slow upstream cannot hold the bill back. Default: none
   * (billed when the framework ends the generator, which waits for a pending source).
   */
  signal?: AbortSignal | undefined;
}

function iteratorOf<T>(messages: AsyncIterable<T> | Iterable<T>): AsyncIterator<T> | Iterator<T> {
  return Symbol.asyncIterator in messages
    ? messages[Symbol.asyncIterator]()
    : (messages as Iterable<T>)[Symbol.iterator]();
}

/**
 * For a server-streaming handler that bills per message: yields `messages` and, when the stream
 * ends — finished, failed, or cancelled by the client — calls `bill(sent)` exactly once with the
 * number of messages that went out. A message counts once the framework has taken it and asked for
 * the next one (it was written to the connection: what the server sent, not what the client read),
 * so a client that aborts after 3 of 10 messages is billed for 3. Pass `{ signal: ctx.signal }` so
 * a cancel bills at once even while the source is waiting for its next message. What `bill`
 * returns is awaited; if it rejects, the rejection ends the stream (for a cancelled call nobody
 * sees it: report failures inside `bill`).
 *
 * ```ts
 * async *generate(req, ctx) {
 *   yield* meteredStream(tokens(req), (sent) =>
 *     reportUsageFor(ctx, { module: "llm", model: "m", usage: sent }), { signal: ctx.signal });
 * }
 * ```
 */
export async function* meteredStream<T>(
  messages: AsyncIterable<T> | Iterable<T>,
  bill: (sent: number) => unknown,
  options: MeteredStreamOptions = {},
): AsyncGenerator<T, void, undefined> {
  const signal = options.signal;
  const source = iteratorOf(messages);
  let sent = 0;
  let done = false;
  let billing: Promise<unknown> | undefined;
  const billOnce = () => {
    billing ??= (async () => bill(sent))();
    return billing;
  };
  let stop: (v: undefined) => void = () => {};
  const stopped = new Promise<undefined>((resolve) => {
    stop = resolve;
  });
  const onAbort = () => {
    billOnce().catch(() => {}); // seen by the generator's own await below, if it still runs
    stop(undefined);
  };
  if (signal?.aborted) onAbort();
  else signal?.addEventListener("abort", onAbort, { once: true });
  try {
    for (;;) {
      const r = await (signal === undefined
        ? source.next()
        : Promise.race([Promise.resolve(source.next()), stopped]));
      if (r === undefined) return; // aborted while the source was pending
      if (r.done === true) {
        done = true;
        return;
      }
      yield r.value;
      sent++;
    }
  } catch (err) {
    done = true; // a source that threw is finished
    throw err;
  } finally {
    signal?.removeEventListener("abort", onAbort);
    // Stop a source we leave early, without waiting for it (it may be stalled).
    if (!done) Promise.resolve(source.return?.()).catch(() => {});
    await billOnce();
  }
}
