/**
 * A write-behind buffer: rows are pushed from the request path (an array push, nothing more) and
 * written by a timer every `intervalMs`, or sooner once `maxBatch` rows wait. One write at a time;
 * a failed write keeps its rows for the next attempt, up to `maxPending` (then the oldest are
 * dropped and counted, so a long database outage cannot exhaust memory).
 */
export interface BatchStats { pending: number; written: number; dropped: number; failures: number; lastError?: string }

export class BatchWriter<T> {
  private pending: T[] = [];
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = false;
  readonly stats: BatchStats = { pending: 0, written: 0, dropped: 0, failures: 0 };

  constructor(
    readonly name: string,
    private readonly write: (rows: T[]) => Promise<void>,
    private readonly opts: { intervalMs: number; maxBatch: number; maxPending: number; maxPerWrite?: number; onError?: (err: Error) => void },
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.flush(), this.opts.intervalMs);
    this.timer.unref();
  }

  push(row: T): void {
    this.pending.push(row);
    if (this.pending.length > this.opts.maxPending) {
      const over = this.pending.length - this.opts.maxPending;
      this.pending.splice(0, over);
      this.stats.dropped += over;
    }
    this.stats.pending = this.pending.length;
    if (this.pending.length >= this.opts.maxBatch && !this.running && !this.stopped) void this.flush();
  }

  /** Writes what is pending now (one write; rows pushed meanwhile wait for the next one). */
  flush(): Promise<void> {
    if (this.running) return this.running;
    if (this.pending.length === 0) return Promise.resolve();
    const rows = this.pending.splice(0, this.opts.maxPerWrite ?? 20_000);
    this.running = this.write(rows).then(
      () => { this.stats.written += rows.length; },
      (err: Error) => {
        this.stats.failures++;
        this.stats.lastError = err.message;
        this.pending = rows.concat(this.pending);
        if (this.pending.length > this.opts.maxPending) {
          const over = this.pending.length - this.opts.maxPending;
          this.pending.splice(0, over);
          this.stats.dropped += over;
        }
        this.opts.onError?.(err);
      },
    ).finally(() => {
      this.running = undefined;
      this.stats.pending = this.pending.length;
    });
    return this.running;
  }

  /** Stops the timer and writes everything pending, retrying failed writes until `deadlineMs` passes. */
  async stop(deadlineMs = 10_000): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    const end = Date.now() + deadlineMs;
    if (this.running) await this.running;
    while (this.pending.length > 0 && Date.now() < end) {
      const before = this.stats.failures;
      await this.flush();
      if (this.stats.failures > before) await new Promise((r) => setTimeout(r, 200));
    }
  }
}
