/**
 * MovieLens ratings as course log lines: each rating becomes a short watch session (one line per
 * minute, ending at the rating's time) followed by the rating itself, and each user gets an
 * account line before their first session. Lines come out in time order without holding them all
 * (the 1M set makes millions): sessions only reach `minutes` back, so a small heap of the events
 * within that reach is enough.
 */
import { atFromMs, formatEvent } from '../events/format.ts';
import type { LogEvent } from '../events/types.ts';
import type { MovieLensData } from './read.ts';

export interface LineOptions {
  /** Watch minutes per rating (lines /data/m/<id>/0.mpg … /<minutes-1>.mpg), default 5. */
  minutes?: number;
  /** Added to every MovieLens user id, to keep them apart from users already in the system. */
  userOffset?: number;
  /** Emit GET /create_account before a user's first session (default true). */
  accounts?: boolean;
}

interface Pending { atMs: number; seq: number; event: LogEvent }

/** A binary min-heap on (atMs, seq). */
class Heap {
  private a: Pending[] = [];
  get size(): number { return this.a.length; }
  peek(): Pending | undefined { return this.a[0]; }
  private less(i: number, j: number): boolean {
    const x = this.a[i], y = this.a[j];
    return x.atMs < y.atMs || (x.atMs === y.atMs && x.seq < y.seq);
  }
  push(p: Pending): void {
    const a = this.a;
    a.push(p);
    for (let i = a.length - 1; i > 0;) {
      const parent = (i - 1) >> 1;
      if (!this.less(i, parent)) break;
      [a[i], a[parent]] = [a[parent], a[i]];
      i = parent;
    }
  }
  pop(): Pending | undefined {
    const a = this.a;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last) {
      a[0] = last;
      for (let i = 0; ;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < a.length && this.less(l, m)) m = l;
        if (r < a.length && this.less(r, m)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m], a[i]];
        i = m;
      }
    }
    return top;
  }
}

export function lineCount(data: MovieLensData, opts: LineOptions = {}): number {
  const users = new Set(data.ratings.map((r) => r.userId)).size;
  return data.ratings.length * ((opts.minutes ?? 5) + 1) + (opts.accounts === false ? 0 : users);
}

/** The import's lines in time order. */
export function* movieLensLines(data: MovieLensData, opts: LineOptions = {}): Generator<string> {
  const minutes = opts.minutes ?? 5;
  const offset = opts.userOffset ?? 0;
  if (!Number.isInteger(minutes) || minutes < 1 || minutes > 600) throw new Error(`minutes must be an integer from 1 to 600 (got ${minutes})`);
  const reach = minutes * 60_000 + 1000;
  const heap = new Heap();
  const started = new Set<number>();
  let seq = 0;
  const at = (ms: number) => atFromMs(ms);
  for (const r of data.ratings) {
    // Everything older than this rating's session start can no longer be preceded by a new event.
    const floor = r.atMs - reach;
    while (heap.size > 0 && heap.peek()!.atMs < floor) yield formatEvent(heap.pop()!.event);
    const userId = r.userId + offset;
    const movieId = data.movies.get(r.mlMovieId)!.slug;
    const start = r.atMs - minutes * 60_000;
    if (opts.accounts !== false && !started.has(userId)) {
      started.add(userId);
      heap.push({ atMs: start - 1000, seq: seq++, event: { kind: 'account', userId, ...at(start - 1000) } });
    }
    for (let m = 0; m < minutes; m++) {
      const t = start + m * 60_000;
      heap.push({ atMs: t, seq: seq++, event: { kind: 'watch', userId, movieId, minute: m, ...at(t) } });
    }
    heap.push({ atMs: r.atMs, seq: seq++, event: { kind: 'rate', userId, movieId, rating: r.rating, ...at(r.atMs) } });
  }
  while (heap.size > 0) yield formatEvent(heap.pop()!.event);
}
