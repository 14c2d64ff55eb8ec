/**
 * What a model ranks with besides the user's own history, read from Postgres: popularity, the
 * popular and cold-start lists, the movies that may be recommended, and for the cowatch rule the
 * co-watch index and recent starts. As of a time T every one of them is built from activity before
 * T only (watches.first_at, ratings.rated_at < T), so an answer for asOf=T is the one a model could
 * have given then. The inference service and offline evaluation both rank through rankWithLists,
 * so an offline score and a served answer for the same user and time are the same list.
 */
import type pg from 'pg';
import { CoWatchIndex } from './cowatch.ts';
import { coldStartList, popularityTable, rank, topPopular, type HistoryEntry, type NeighbourSource, type PopularityTable, type Ranked, type RecentPopularity, type VectorSpace } from './rank.ts';
import type { CoWatchSpec, ModelSpec } from './spec.ts';

type Queryable = Pick<pg.Pool, 'query'>;

export interface CoWatchLists {
  coWatch: CoWatchIndex;
  recent: RecentPopularity;
}

export interface ServingLists extends Partial<CoWatchLists> {
  popularity: PopularityTable;
  /** Most popular first (at most 100). */
  popular: string[];
  coldStart: string[];
  /** Absent: every movie may be recommended (serving now). */
  eligible?: (movieId: string) => boolean;
}

const yieldToEvents = () => new Promise<void>((r) => setImmediate(r));

/** Starts per movie in [asOf − windowHours, asOf) (asOf null: now), every movie started. */
export async function recentStarts(db: Queryable, windowHours: number, asOf: Date | null, timeoutMs = 60_000): Promise<[string, number][]> {
  const to = asOf ?? new Date();
  const from = new Date(to.getTime() - windowHours * 3_600_000);
  const { rows } = await db.query<{ movie_id: string; n: number }>({
    text: 'SELECT movie_id, count(*)::int AS n FROM watches WHERE first_at >= $1 AND first_at < $2 GROUP BY movie_id',
    values: [from, to],
    query_timeout: timeoutMs,
  } as pg.QueryConfig);
  return rows.map((r) => [r.movie_id, r.n]);
}

const withTop = (entries: readonly (readonly [string, number])[]): RecentPopularity => Object.assign(popularityTable(entries), { top: topPopular(entries, 200) });

/**
 * cowatch's popularity prior: a movie's starts in the window over its viewers of all time (before
 * the same time) to the power trendExponent, so that with an exponent above 0 a movie on the rise
 * outranks a long-time favourite with as many recent starts. Viewers are at least the recent starts
 * (the index may be a little older than the counts).
 */
export function coWatchPrior(starts: readonly (readonly [string, number])[], coWatch: CoWatchIndex, trendExponent: number): RecentPopularity {
  if (trendExponent === 0) return withTop(starts);
  return withTop(starts.map(([id, n]) => [id, n / Math.pow(Math.max(n, coWatch.watchersOf(id)), trendExponent)] as const));
}

/** The co-watch index and the prior of a cowatch spec, from the watches before asOf (all when null). */
export async function coWatchLists(db: Queryable, spec: CoWatchSpec, asOf: Date | null, timeoutMs = 120_000): Promise<CoWatchLists> {
  const [{ rows }, starts] = await Promise.all([
    db.query<{ movies: string[] }>({
      text: 'SELECT array_agg(movie_id) AS movies FROM watches WHERE first_at < $1 GROUP BY user_id',
      values: [asOf ?? 'infinity'],
      query_timeout: timeoutMs,
    } as pg.QueryConfig),
    recentStarts(db, spec.params.popularityWindowHours, asOf, timeoutMs),
  ]);
  return coWatchListsFrom(rows.map((r) => r.movies), starts, spec, yieldToEvents);
}

/**
 * The co-watch index and the prior of a cowatch spec from data already selected as of a time:
 * each user's movies first watched before it, and the starts per movie in the spec's window before
 * it. coWatchLists reads them from Postgres; a benchmark replaying a history in memory selects the
 * same and builds through here, so both rank with the same lists.
 */
export async function coWatchListsFrom(userMovies: Iterable<readonly string[]>, starts: readonly (readonly [string, number])[], spec: CoWatchSpec, pause?: () => Promise<void>): Promise<CoWatchLists> {
  const p = spec.params;
  const coWatch = await CoWatchIndex.build(userMovies, { neighbours: p.neighboursPerMovie, alpha: p.alpha, minCoWatchers: p.minCoWatchers }, pause);
  return { coWatch, recent: coWatchPrior(starts, coWatch, p.trendExponent) };
}

/**
 * Everything a spec ranks with as of T: popularity is the number of users who had started each
 * movie before T (catalog popularity is today's, so it is not used), the popular and cold-start
 * lists follow from it and from the starts in the spec's window before T, and only movies with
 * some activity before T may be recommended.
 */
export async function listsAsOf(db: Queryable, spec: ModelSpec, asOf: Date, timeoutMs = 120_000): Promise<ServingLists> {
  const cs = spec.params.coldStart;
  const [{ rows }, recentRows, cowatch] = await Promise.all([
    db.query<{ movie_id: string; n: number }>({
      text: `SELECT movie_id, max(n)::int AS n FROM (
               SELECT movie_id, count(*) AS n FROM watches WHERE first_at < $1 GROUP BY movie_id
               UNION ALL SELECT movie_id, 0 FROM ratings WHERE rated_at < $1 GROUP BY movie_id) x GROUP BY movie_id`,
      values: [asOf],
      query_timeout: timeoutMs,
    } as pg.QueryConfig),
    cs.kind === 'recent' ? recentStarts(db, cs.windowHours, asOf, timeoutMs).then(withTop) : null,
    spec.rule === 'cowatch' ? coWatchLists(db, spec, asOf, timeoutMs) : null,
  ]);
  const counts = rows.map((r) => [r.movie_id, r.n] as const);
  const known = new Set(rows.map((r) => r.movie_id));
  const popular = topPopular(counts.filter(([, n]) => n > 0), 100);
  const recent = recentRows === null ? [] : recentRows.top.slice(0, 100).map((movieId) => ({ movieId, viewers: recentRows.get(movieId)! }));
  return {
    popularity: popularityTable(counts),
    popular,
    coldStart: coldStartList(cs, { popular, recent }),
    eligible: (id) => known.has(id),
    ...(cowatch ?? {}),
  };
}

export interface RankRequest {
  history: readonly HistoryEntry[];
  /** Vector neighbours (the serving code answers only from its cache). */
  neighbours: NeighbourSource;
  space: VectorSpace;
  /** The time of the request or asOf, ms. */
  now: number;
}

/** rank() with the lists: the one place where serving and offline evaluation build a rank input. */
export function rankWithLists(spec: ModelSpec, lists: ServingLists, req: RankRequest): Ranked {
  const coWatch = lists.coWatch;
  return rank(spec, {
    history: req.history,
    neighbours: req.neighbours,
    space: req.space,
    popularity: lists.popularity,
    coldStart: lists.coldStart,
    now: req.now,
    eligible: lists.eligible,
    coWatch: coWatch === undefined ? undefined : (id, k) => coWatch.neighbours(id, k),
    recent: lists.recent,
  });
}
