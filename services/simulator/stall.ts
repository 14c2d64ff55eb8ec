/**
 * A feedback loop on purpose (issue 15's stale-history loop): for a stretch of the run the
 * platform's lines are held back instead of reaching Kafka, as if ingest were down, while users
 * keep asking for and following recommendations; at the end of the stretch the held lines go out
 * in order (ingest catching up). Held lines do not count as backlog, so the traffic does not slow
 * down: the recommender keeps answering from a history that no longer advances.
 */
import type { LineSink } from './sink.ts';

export interface Stall {
  /** Real milliseconds after the first line before holding starts, and how long it lasts. */
  afterMs: number;
  forMs: number;
}

/** "2m+5m": hold from 2 minutes into the run for 5 minutes (durations as ms, s, m or h). */
export function parseStall(text: string, durationMs: (t: string) => number): Stall {
  const m = /^([^+]+)\+([^+]+)$/.exec(text.trim());
  if (!m) throw new Error(`--stall must be <after>+<for>, e.g. 2m+5m (got "${text}")`);
  return { afterMs: durationMs(m[1]), forMs: durationMs(m[2]) };
}

export class StallingSink implements LineSink {
  private held: [string, string][] = [];
  private start: number | null = null;
  heldTotal = 0;

  constructor(private readonly inner: LineSink, private readonly stall: Stall, private readonly now: () => number = () => performance.now()) {}

  /** Whether lines are being held right now. */
  holding(): boolean {
    if (this.start === null) return false;
    const t = this.now() - this.start;
    return t >= this.stall.afterMs && t < this.stall.afterMs + this.stall.forMs;
  }

  write(key: string, line: string): void {
    if (this.start === null) this.start = this.now();
    if (this.holding()) {
      this.held.push([key, line]);
      this.heldTotal++;
      return;
    }
    this.release();
    this.inner.write(key, line);
  }

  /** Sends what was held, in order (also at flush and close: nothing is lost). */
  release(): void {
    if (this.held.length === 0) return;
    const held = this.held;
    this.held = [];
    for (const [k, l] of held) this.inner.write(k, l);
  }

  backlog(): number { return this.inner.backlog(); }
  produced(): number { return this.inner.produced(); }
  async flush(): Promise<void> { this.release(); await this.inner.flush(); }
  async close(): Promise<void> { this.release(); await this.inner.close(); }
}
