/**
 * A write-behind buffer: rows are pushed from the request path (an array push, nothing more) and
 * written by a timer every `intervalMs`, or sooner once `maxBatch` rows wait; while a backlog
 * remains, writes follow each other (yielding to the event loop between them) at most
 * `maxPerWrite` rows each, so that serialising one batch never stalls answers for long. One write
 * at a time; a failed write keeps its rows for the next attempt. The buffer is bounded by
 * `maxPending`: past it, during a long database outage, new rows are dropped and counted (O(1) on
 * the request path, unlike cutting the head off a huge array on every push).
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
    if (this.pending.length >= this.opts.maxPending) this.stats.dropped++;
    else this.pending.push(row);
    this.stats.pending = this.pending.length;
    if (this.pending.length >= this.opts.maxBatch && !this.running && !this.stopped) void this.flush();
  }

  /** Writes what is pending now (one write; rows pushed meanwhile wait for the next one). */
  flush(): Promise<void> {
    if (this.running) return this.running;
    if (this.pending.length === 0) return Promise.resolve();
    const rows = this.pending.splice(0, this.opts.maxPerWrite ?? 20_000);
    this.running = this.write(rows).then(
      () => {
        this.stats.written += rows.length;
        // A backlog is written batch after batch, not one batch per timer tick.
        if (this.pending.length >= this.opts.maxBatch && !this.stopped) setImmediate(() => { if (!this.running) void this.flush(); });
      },
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
