// Small concurrency tools for the backup and restore pipelines: bounded parallel work that
// keeps its input order, and a byte budget that makes a fast producer wait for a slow consumer.

/**
 * Apply `fn` to every item with at most `limit` calls in flight, yielding results in input
 * order. This is read-ahead: while the consumer handles result i, results i+1..i+limit-1 are
 * already being produced. The first failure rejects the iteration; later results are dropped.
 */
export async function* orderedMap<T, R>(
  items: Iterable<T> | AsyncIterable<T>,
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): AsyncGenerator<R> {
  if (limit < 1) throw new RangeError(`limit must be at least 1, got ${limit}`);
  const pending: Promise<R>[] = [];
  let index = 0;
  try {
    for await (const item of items) {
      const promise = fn(item, index++);
      // Failures surface when the consumer reaches this position; until then keep them quiet.
      promise.catch(() => {});
      pending.push(promise);
      if (pending.length >= limit) yield await pending.shift()!;
    }
    while (pending.length > 0) yield await pending.shift()!;
  } finally {
    // Results nobody will read: let them settle without unhandled rejections.
    for (const promise of pending) promise.catch(() => {});
  }
}

/** Run `fn` over every item with at most `limit` in flight; order of completion is free. */
export async function forEachLimit<T>(
  items: Iterable<T>,
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  const iterator = items[Symbol.iterator]();
  let failed: unknown = null;
  const worker = async () => {
    for (;;) {
      if (failed !== null) return;
      const next = iterator.next();
      if (next.done) return;
      try {
        await fn(next.value);
      } catch (error) {
        failed ??= error;
        return;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, limit) }, worker));
  if (failed !== null) throw failed;
}

/**
 * A budget of bytes in flight. `acquire(n)` waits until n more bytes fit (a single request
 * larger than the whole budget is let through alone, so it cannot wait forever).
 */
export class ByteBudget {
  readonly limit: number;
  #used = 0;
  #waiters: { bytes: number; resolve: () => void }[] = [];

  constructor(limit: number) {
    this.limit = limit;
  }

  get used(): number {
    return this.#used;
  }

  async acquire(bytes: number): Promise<void> {
    if (this.#fits(bytes) && this.#waiters.length === 0) {
      this.#used += bytes;
      return;
    }
    await new Promise<void>((resolve) => this.#waiters.push({ bytes, resolve }));
  }

  release(bytes: number): void {
    this.#used -= bytes;
    while (this.#waiters.length > 0 && this.#fits(this.#waiters[0]!.bytes)) {
      const waiter = this.#waiters.shift()!;
      this.#used += waiter.bytes;
      waiter.resolve();
    }
  }

  #fits(bytes: number): boolean {
    return this.#used === 0 || this.#used + bytes <= this.limit;
  }
}
