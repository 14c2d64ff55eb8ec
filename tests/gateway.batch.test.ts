/**
 * The gateway's write-behind buffer (services/gateway/batch.ts) alone, with a fake write: rows are
 * never silently lost — a failed write keeps them, overflow past the bound is counted — and a
 * backlog is written in bounded batches one after the other, not one batch per timer tick.
 */
import { describe, expect, it } from 'vitest';
import { BatchWriter } from '../services/gateway/batch.ts';

const tick = () => new Promise((r) => setImmediate(r));

describe('BatchWriter (the gateway history buffer)', () => {
  it('past maxPending drops new rows in O(1) and counts every one; written + pending + dropped = pushed', async () => {
    let fail = true;
    const written: number[] = [];
    const w = new BatchWriter<number>('t', async (rows) => { if (fail) throw new Error('database away'); written.push(...rows); }, { intervalMs: 60_000, maxBatch: 1_000_000, maxPending: 1000 });
    for (let i = 0; i < 1500; i++) w.push(i);
    expect(w.stats).toMatchObject({ pending: 1000, dropped: 500 });
    await w.flush();
    expect(w.stats).toMatchObject({ failures: 1, pending: 1000, dropped: 500, written: 0 });
    fail = false;
    await w.stop(1000);
    expect(written).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(w.stats.written + w.stats.pending + w.stats.dropped).toBe(1500);
  });

  it('writes a backlog in batches of at most maxPerWrite, back to back, without waiting for the timer', async () => {
    const sizes: number[] = [];
    const w = new BatchWriter<number>('t', async (rows) => { sizes.push(rows.length); }, { intervalMs: 60_000, maxBatch: 100, maxPending: 1_000_000, maxPerWrite: 2000 });
    // The first push past maxBatch starts a write; the rest pile up behind it.
    for (let i = 0; i < 7000; i++) w.push(i);
    for (let i = 0; i < 50 && w.stats.pending > 0; i++) await tick();
    expect(w.stats.pending).toBe(0);
    expect(w.stats.written).toBe(7000);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(2000);
  });
});
