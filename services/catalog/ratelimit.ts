/**
 * A token bucket shared by all of the catalog's request workers: at most `rate` requests per
 * second on average, with bursts of at most `burst`. The info API is someone else's service, so
 * the limit holds across concurrency, retries and 404s alike.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;
  private queue: Promise<void> = Promise.resolve();

  constructor(readonly rate: number, readonly burst = Math.max(1, Math.min(rate, 10)), private now: () => number = () => performance.now()) {
    if (!(rate > 0)) throw new Error(`rate must be positive, got ${rate}`);
    this.tokens = this.burst;
    this.last = this.now();
  }

  /** Resolves when a token is available (callers are served in arrival order); rejects if the signal aborts. */
  take(signal?: AbortSignal): Promise<void> {
    const turn = this.queue.then(() => this.wait(signal));
    // A rejected wait must not poison the queue for those behind it.
    this.queue = turn.catch(() => undefined);
    return turn;
  }

  private async wait(signal?: AbortSignal): Promise<void> {
    for (;;) {
      signal?.throwIfAborted();
      const t = this.now();
      this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.rate);
      this.last = t;
      if (this.tokens >= 1) {
        this.tokens -= 1;
        return;
      }
      await sleep(((1 - this.tokens) / this.rate) * 1000, signal);
    }
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(); }, Math.max(0, ms));
    const onAbort = () => { clearTimeout(timer); reject(signal!.reason); };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
