/**
 * cowatch's lists (coWatchLists in lists.ts) from a watch history held in memory instead of read
 * from Postgres, for benchmarks that replay a history: the same selection as the serving queries
 * (a user's movies first watched before T; starts = watches first seen in [T − window, T)), then
 * the same index and prior (coWatchListsFrom). Times are ms since epoch.
 */
import { coWatchListsFrom, coWatchPrior, type CoWatchLists } from './lists.ts';
import type { CoWatchSpec } from './spec.ts';

/** One row of the watches table: one per user and movie, firstAt the first time seen. */
export interface WatchRow {
  userId: number;
  movieId: string;
  firstAt: number;
}

/** Each user's movies first watched before asOf (SELECT array_agg(movie_id) … WHERE first_at < asOf GROUP BY user_id). */
export function moviesByUserBefore(rows: Iterable<WatchRow>, asOf: number): string[][] {
  const byUser = new Map<number, string[]>();
  for (const r of rows) {
    if (!(r.firstAt < asOf)) continue;
    const list = byUser.get(r.userId);
    if (list === undefined) byUser.set(r.userId, [r.movieId]);
    else list.push(r.movieId);
  }
  return [...byUser.values()];
}

/** Starts per movie in [asOf − windowHours, asOf), as recentStarts counts them. */
export function startsBefore(rows: Iterable<WatchRow>, windowHours: number, asOf: number): [string, number][] {
  const from = asOf - windowHours * 3_600_000;
  const counts = new Map<string, number>();
  for (const r of rows) if (r.firstAt >= from && r.firstAt < asOf) counts.set(r.movieId, (counts.get(r.movieId) ?? 0) + 1);
  return [...counts];
}

/** coWatchLists(db, spec, asOf) for the watches in `rows`. */
export function coWatchListsInMemory(rows: readonly WatchRow[], spec: CoWatchSpec, asOf: number): Promise<CoWatchLists> {
  return coWatchListsFrom(moviesByUserBefore(rows, asOf), startsBefore(rows, spec.params.popularityWindowHours, asOf), spec);
}

/**
 * cowatch's lists as the inference service keeps them, for requests asked in time order: the
 * co-watch index rebuilt from the watches before the start of each data-set day (UTC) a request
 * falls in (one build per request is too slow; serving rebuilds every few minutes), and the prior
 * recomputed for every request from the starts before it over that day's index, as serving
 * refreshes it between rebuilds. `rows` must be sorted by firstAt (the windows are found by bisection).
 */
export function coWatchListsByDay(rows: readonly WatchRow[], spec: CoWatchSpec): ((at: number) => Promise<CoWatchLists>) & { stats(): { builds: number; ms: number } } {
  for (let i = 1; i < rows.length; i++) {
    if (rows[i].firstAt < rows[i - 1].firstAt) throw new Error(`coWatchListsByDay: rows must be sorted by firstAt, row ${i} (${rows[i].firstAt}) is before row ${i - 1} (${rows[i - 1].firstAt})`);
  }
  const day = 86_400_000;
  const windowMs = spec.params.popularityWindowHours * 3_600_000;
  let builtFor = NaN, built: CoWatchLists | null = null, builds = 0, ms = 0;
  const firstAtOrAfter = (t: number) => {
    let lo = 0, hi = rows.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (rows[mid].firstAt < t) lo = mid + 1; else hi = mid; }
    return lo;
  };
  const at = async (t: number): Promise<CoWatchLists> => {
    const dayStart = Math.floor(t / day) * day;
    if (built === null || builtFor !== dayStart) {
      const t0 = performance.now();
      built = await coWatchListsInMemory(rows.slice(0, firstAtOrAfter(dayStart)), spec, dayStart);
      builtFor = dayStart;
      builds++;
      ms += performance.now() - t0;
    }
    const starts = startsBefore(rows.slice(firstAtOrAfter(t - windowMs), firstAtOrAfter(t)), spec.params.popularityWindowHours, t);
    return { coWatch: built.coWatch, recent: coWatchPrior(starts, built.coWatch, spec.params.trendExponent) };
  };
  return Object.assign(at, { stats: () => ({ builds, ms }) });
}
