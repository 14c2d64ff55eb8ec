/**
 * A user's history as the ranking rules see it, read from Postgres, optionally as of a past time:
 * rows that started at or after asOf (watches.first_at, ratings.rated_at) are hidden, so offline
 * evaluation can ask what a model would have answered then.
 */
import type pg from 'pg';
import type { HistoryEntry } from './rank.ts';

type Queryable = Pick<pg.Pool, 'query'>;

// Named statements are prepared once per connection and reused.
const HISTORY_SQL = `
WITH w AS (SELECT movie_id, minutes, first_at, last_at FROM watches WHERE user_id = $1 AND first_at < $2),
     r AS (SELECT movie_id, rating, rated_at FROM ratings WHERE user_id = $1 AND rated_at < $2)
SELECT x.movie_id, x.minutes, x.first_at, x.last_at, x.rating, x.rated_at,
       (SELECT m.runtime FROM movies m WHERE m.id = x.movie_id) AS runtime
FROM (SELECT coalesce(w.movie_id, r.movie_id) AS movie_id, w.minutes, w.first_at, w.last_at, r.rating, r.rated_at
      FROM w FULL JOIN r ON r.movie_id = w.movie_id) x`;
// The runtime is a scalar subquery so that it is always a primary-key lookup: a generic plan for
// a join could pick a scan of the whole catalog for every request.

interface HistoryRow {
  movie_id: string;
  minutes: number | null;
  first_at: Date | null;
  last_at: Date | null;
  rating: number | null;
  rated_at: Date | null;
  runtime: number | null;
}

export interface QueryOptions {
  /** Gives up on the query after this long (the connection is released); default 2 s. */
  timeoutMs?: number;
}

/**
 * The user's watches and ratings before asOf (all of them when asOf is null). A watch that began
 * before asOf but went on after it keeps only the share of its minutes that fits before asOf
 * (rows hold aggregates, so the split is an estimate proportional to time).
 */
export async function readHistory(db: Queryable, userId: number, asOf: Date | null = null, opts: QueryOptions = {}): Promise<HistoryEntry[]> {
  const { rows } = await db.query<HistoryRow>({
    name: 'marquee_user_history',
    text: HISTORY_SQL,
    values: [userId, asOf ?? 'infinity'],
    query_timeout: opts.timeoutMs ?? 2000,
  } as pg.QueryConfig);
  const cut = asOf?.getTime() ?? Infinity;
  return rows.map((r) => historyEntry(r, cut));
}

function historyEntry(r: HistoryRow, cut: number): HistoryEntry {
  let minutes = r.minutes ?? 0;
  let lastAt = r.last_at?.getTime() ?? null;
  const firstAt = r.first_at?.getTime() ?? null;
  if (lastAt !== null && firstAt !== null && lastAt >= cut) {
    minutes = lastAt > firstAt ? Math.floor((minutes * (cut - firstAt)) / (lastAt - firstAt)) : minutes;
    lastAt = cut;
  }
  return {
    movieId: r.movie_id,
    minutes,
    firstAt,
    lastAt,
    rating: r.rating,
    ratedAt: r.rated_at?.getTime() ?? null,
    runtime: r.runtime,
  };
}

/** readHistory (no asOf) of many users in one query: every user asked has an entry, [] when none. */
export async function readHistories(db: Queryable, userIds: readonly number[], opts: QueryOptions = {}): Promise<Map<number, HistoryEntry[]>> {
  const { rows } = await db.query<HistoryRow & { user_id: number }>({
    text: `
WITH w AS (SELECT user_id, movie_id, minutes, first_at, last_at FROM watches WHERE user_id = ANY($1::int[])),
     r AS (SELECT user_id, movie_id, rating, rated_at FROM ratings WHERE user_id = ANY($1::int[]))
SELECT x.user_id, x.movie_id, x.minutes, x.first_at, x.last_at, x.rating, x.rated_at,
       (SELECT m.runtime FROM movies m WHERE m.id = x.movie_id) AS runtime
FROM (SELECT coalesce(w.user_id, r.user_id) AS user_id, coalesce(w.movie_id, r.movie_id) AS movie_id,
             w.minutes, w.first_at, w.last_at, r.rating, r.rated_at
      FROM w FULL JOIN r ON r.user_id = w.user_id AND r.movie_id = w.movie_id) x`,
    values: [userIds],
    query_timeout: opts.timeoutMs ?? 30_000,
  } as pg.QueryConfig);
  const out = new Map<number, HistoryEntry[]>(userIds.map((u) => [u, []]));
  for (const r of rows) out.get(r.user_id)?.push(historyEntry(r, Infinity));
  return out;
}

/** The users most recently active (by their latest watch), most recent first. */
export async function recentlyActiveUsers(db: Queryable, limit: number, opts: QueryOptions = {}): Promise<number[]> {
  const { rows } = await db.query<{ user_id: number }>({
    text: 'SELECT user_id FROM watches GROUP BY user_id ORDER BY max(last_at) DESC, user_id LIMIT $1',
    values: [limit],
    query_timeout: opts.timeoutMs ?? 60_000,
  } as pg.QueryConfig);
  return rows.map((r) => r.user_id);
}

/** Movies by how many users started watching them in [asOf - windowHours, asOf), most first. */
export async function recentWatchCounts(db: Queryable, windowHours: number, asOf: Date | null = null, limit = 100, opts: QueryOptions = {}): Promise<{ movieId: string; viewers: number }[]> {
  const end = asOf ?? new Date();
  const start = new Date(end.getTime() - windowHours * 3_600_000);
  const { rows } = await db.query<{ movie_id: string; viewers: number }>({
    name: 'marquee_recent_watches',
    text: `SELECT movie_id, count(*)::int AS viewers FROM watches WHERE first_at >= $1 AND first_at < $2
           GROUP BY movie_id ORDER BY viewers DESC, movie_id LIMIT $3`,
    values: [start, end, limit],
    query_timeout: opts.timeoutMs ?? 10_000,
  } as pg.QueryConfig);
  return rows.map((r) => ({ movieId: r.movie_id, viewers: r.viewers }));
}

/**
 * Catalog popularity of the movies fetched since `since` (all of them when null), and the latest
 * fetch time seen, for the next incremental call.
 */
export async function catalogPopularity(db: Queryable, since: Date | null = null, opts: QueryOptions = {}): Promise<{ rows: [string, number][]; latest: Date | null }> {
  const { rows } = await db.query<{ id: string; popularity: number; at: Date }>({
    text: `SELECT id, popularity, coalesce(fetched_at, first_seen_at) AS at FROM movies
           WHERE popularity IS NOT NULL AND ($1::timestamptz IS NULL OR coalesce(fetched_at, first_seen_at) >= $1)`,
    values: [since],
    query_timeout: opts.timeoutMs ?? 10_000,
  } as pg.QueryConfig);
  let latest = since;
  for (const r of rows) if (latest === null || r.at > latest) latest = r.at;
  return { rows: rows.map((r) => [r.id, r.popularity]), latest };
}

/**
 * The most watched movies of all time, for a popular list when neither the catalog nor the
 * vectors know any popularity yet (a fresh install).
 */
export async function mostWatched(db: Queryable, limit = 100, opts: QueryOptions = {}): Promise<[string, number][]> {
  const { rows } = await db.query<{ movie_id: string; viewers: number }>({
    text: 'SELECT movie_id, count(*)::int AS viewers FROM watches GROUP BY movie_id ORDER BY viewers DESC, movie_id LIMIT $1',
    values: [limit],
    query_timeout: opts.timeoutMs ?? 10_000,
  } as pg.QueryConfig);
  return rows.map((r) => [r.movie_id, r.viewers]);
}
