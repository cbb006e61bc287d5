// A small unbounded single-consumer queue between callbacks and the async generator that streams what
// they produce to a caller (the inference scheduler's per-request events, the verifier's Solve progress).
export class Channel<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private wake: (() => void) | undefined;
  private closed = false;
  private failure: { err: unknown } | undefined;

  push(item: T): void {
    this.items.push(item);
    this.wake?.();
  }

  /** No more items: the consumer ends after the queued ones. */
  close(): void {
    this.closed = true;
    this.wake?.();
  }

  /** The consumer throws `err` after the queued items. */
  fail(err: unknown): void {
    this.failure = { err };
    this.wake?.();
  }

  async *drain(): AsyncGenerator<T> {
    for (;;) {
      while (this.items.length > 0) yield this.items.shift() as T;
      if (this.failure !== undefined) throw this.failure.err;
      if (this.closed) return;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      this.wake = undefined;
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return this.drain();
  }
}
