/**
 * bench:models builds cowatch's lists from an in-memory history (lib/models/cowatch-memory.ts);
 * the inference service reads them from Postgres (coWatchLists). Fed the same watches, in a
 * scratch database and in memory, both must give the same index, prior and answers.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pool } from '../lib/db.ts';
import { coWatchListsByDay, coWatchListsInMemory, type WatchRow } from '../lib/models/cowatch-memory.ts';
import { coWatchLists, coWatchPrior, rankWithLists, recentStarts, type CoWatchLists } from '../lib/models/lists.ts';
import { popularityTable, type HistoryEntry } from '../lib/models/rank.ts';
import { loadSpec, type CoWatchSpec } from '../lib/models/spec.ts';
import { VectorIndex } from '../lib/models/vectors.ts';
import { Rng } from '../lib/random.ts';
import { scratchDatabase } from './support/db.ts';

const H = 3_600_000, D = 24 * H;
const shipped = loadSpec('models/cowatch-v1.json').spec as CoWatchSpec;
// A window of days rather than weeks, so that the 40-day history has starts in and out of it.
const spec: CoWatchSpec = { ...shipped, params: { ...shipped.params, neighboursPerMovie: 8, popularityWindowHours: 72 } };
// Whole hours on UTC days, starting at a day boundary.
const T0 = Date.UTC(2026, 10, 1);

// 60 users, 40 movies, 40 days: one row per user and movie, at a whole hour (so some fall exactly on a boundary).
const rng = new Rng(7);
const rows: WatchRow[] = [];
for (let u = 1; u <= 60; u++) {
  for (const m of rng.sample(40, rng.int(1, 15))) rows.push({ userId: u, movieId: `m${m}`, firstAt: T0 + rng.int(0, 40 * 24 - 1) * H });
}
rows.sort((a, b) => a.firstAt - b.firstAt || a.userId - b.userId);

let db: { pool: Pool; drop: () => Promise<void> };
beforeAll(async () => {
  db = await scratchDatabase('cowatchmem');
  for (const r of rows) {
    await db.pool.query('INSERT INTO watches (user_id, movie_id, first_at, last_at, minutes, max_minute) VALUES ($1, $2, $3, $3, 1, 0)', [r.userId, r.movieId, new Date(r.firstAt)]);
  }
});
afterAll(async () => db?.drop());

const movies = Array.from({ length: 40 }, (_, m) => `m${m}`);
function expectSame(got: CoWatchLists, served: CoWatchLists, now: number) {
  expect(got.coWatch.users).toBe(served.coWatch.users);
  for (const id of movies) {
    expect(got.coWatch.neighbours(id, 50)).toEqual(served.coWatch.neighbours(id, 50));
    expect(got.coWatch.watchersOf(id)).toBe(served.coWatch.watchersOf(id));
    expect(got.recent.get(id)).toBe(served.recent.get(id));
  }
  expect(got.recent.top).toEqual(served.recent.top);
  expect(got.recent.max).toBe(served.recent.max);
  // Every user's answer is the same list.
  const base = { popularity: popularityTable([]), popular: [], coldStart: ['m0', 'm1'] };
  for (let u = 1; u <= 60; u++) {
    const history: HistoryEntry[] = rows.filter((r) => r.userId === u && r.firstAt < now)
      .map((r) => ({ movieId: r.movieId, minutes: 1, firstAt: r.firstAt, lastAt: r.firstAt, rating: null, ratedAt: null, runtime: null }));
    const req = { history, neighbours: () => [], space: VectorIndex.from([]), now };
    expect(rankWithLists(spec, { ...base, ...got }, req).ids).toEqual(rankWithLists(spec, { ...base, ...served }, req).ids);
  }
}

describe('cowatch lists in memory and from Postgres', () => {
  it('as of a time (a day boundary, an hour with watches on it, after everything) they are the same', async () => {
    for (const asOf of [T0 + 20 * D, rows[rows.length >> 1].firstAt, T0 + 41 * D]) {
      const served = await coWatchLists(db.pool, spec, new Date(asOf));
      // Not empty, with starts in the window, or the comparison would say little.
      expect(served.coWatch.size).toBeGreaterThan(10);
      expect(served.recent.top.length).toBeGreaterThan(3);
      expectSame(await coWatchListsInMemory(rows, spec, asOf), served, asOf);
    }
  });

  it('day by day they are what serving holds between rebuilds: the index of the day\'s start, the prior now', async () => {
    const byDay = coWatchListsByDay(rows, spec);
    for (const at of [T0 + 10 * D + 5 * H, T0 + 10 * D + 23 * H, T0 + 25 * D + 12 * H]) {
      const dayStart = Math.floor(at / D) * D;
      const index = (await coWatchLists(db.pool, spec, new Date(dayStart))).coWatch;
      const served = { coWatch: index, recent: coWatchPrior(await recentStarts(db.pool, spec.params.popularityWindowHours, new Date(at)), index, spec.params.trendExponent) };
      expectSame(await byDay(at), served, at);
    }
    expect(byDay.stats().builds).toBe(2);
  });
});
