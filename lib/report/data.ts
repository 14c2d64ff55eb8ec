/**
 * The rows a report is computed from, read once from Postgres: the served lists of the period
 * (optionally of one release), the watches and ratings around them, the catalogue and the user
 * metadata. The figures themselves are computed in TypeScript (lib/report/build.ts) so that the
 * report and its tests share one definition of each metric (lib/report/metrics.ts).
 *
 * Memory: one object per served list and per watch in the period. A day of the simulator at
 * 100 lines/s is a few hundred thousand of each, well within a CLI's reach; a longer period
 * should be reported window by window (--since/--until).
 */
import type { Pool } from '../db.ts';

type Queryable = Pick<Pool, 'query'>;

export interface ServedList {
  id: number;
  at: number;
  userId: number;
  /** Who answered: main, nightly or popular (the gateway's last-resort list). */
  slot: string;
  releaseId: string | null;
  movieIds: string[];
  fallback: string | null;
}

export interface WatchRow { userId: number; movieId: string; firstAt: number; minutes: number; rating: number | null }

export interface MovieRow { id: string; genres: string[] | null; language: string | null; runtime: number | null }

export interface UserRow { id: number; age: number | null; gender: string | null; occupation: string | null }

export interface ReportData {
  since: number;
  until: number;
  releaseId: string | null;
  served: ServedList[];
  /** Watches started in [since, until + attribution window): outcomes of the period's lists. */
  watches: WatchRow[];
  /** Per served user, the movies they had started before their first list of the period. */
  profiles: Map<number, string[]>;
  /** Per served user, whether they had any watch before each of their lists: the first watch time. */
  firstWatch: Map<number, number>;
  /** Distinct watchers per movie up to `until`: the popularity of the metrics. */
  popularity: Map<string, number>;
  movies: MovieRow[];
  users: Map<number, UserRow>;
  /** New users (accounts created in the period, else first watch in it) with their first watches in order (homogenisation). */
  newUsers: { userId: number; firstAt: number; movies: string[] }[];
  /** Users known at all, and those whose metadata the catalog filled. */
  userCounts: { known: number; withMetadata: number };
}

export interface Period { since?: Date; until?: Date; releaseId?: string }

/** The period a report covers: the given bounds, else the release's served span, else the last 24 h. */
export async function resolvePeriod(db: Queryable, p: Period, now = new Date()): Promise<{ since: Date; until: Date }> {
  if (p.releaseId && (!p.since || !p.until)) {
    const { rows } = await db.query<{ first: Date | null; last: Date | null; exists: boolean }>(
      `SELECT min(served_at) AS first, max(served_at) AS last, EXISTS (SELECT 1 FROM releases WHERE id = $1) AS exists
       FROM served_recommendations WHERE release_id = $1`, [p.releaseId]);
    const r = rows[0];
    if (!r.first && !r.exists) throw new Error(`release "${p.releaseId}" is neither in releases nor in served_recommendations`);
    const since = p.since ?? r.first ?? now;
    const until = p.until ?? (r.last ? new Date(r.last.getTime() + 1) : now);
    return { since, until };
  }
  const until = p.until ?? now;
  const since = p.since ?? new Date(until.getTime() - 86_400_000);
  if (since >= until) throw new Error(`--since (${since.toISOString()}) must be before --until (${until.toISOString()})`);
  return { since, until };
}

export async function loadReportData(db: Queryable, p: Period, attributionWindowMs: number, now = new Date()): Promise<ReportData> {
  const { since, until } = await resolvePeriod(db, p, now);
  const releaseId = p.releaseId ?? null;
  const servedQ = db.query<{ id: string; served_at: Date; user_id: number; slot: string; release_id: string | null; movie_ids: string[]; fallback: string | null }>(
    `SELECT id, served_at, user_id, slot, release_id, movie_ids, fallback FROM served_recommendations
     WHERE served_at >= $1 AND served_at < $2 AND ($3::text IS NULL OR release_id = $3) ORDER BY served_at, id`,
    [since, until, releaseId]);
  const watchesQ = db.query<{ user_id: number; movie_id: string; first_at: Date; minutes: number; rating: number | null }>(
    `SELECT w.user_id, w.movie_id, w.first_at, w.minutes, r.rating FROM watches w
     LEFT JOIN ratings r ON r.user_id = w.user_id AND r.movie_id = w.movie_id
     WHERE w.first_at >= $1 AND w.first_at < $2::timestamptz + $3 * interval '1 millisecond'`, [since, until, attributionWindowMs]);
  // Profiles: what each served user had started before their first list of the period.
  const profilesQ = db.query<{ user_id: number; movies: string[]; first_watch: Date | null }>(
    `WITH f AS (SELECT user_id, min(served_at) AS first_served FROM served_recommendations
                WHERE served_at >= $1 AND served_at < $2 AND ($3::text IS NULL OR release_id = $3) GROUP BY user_id)
     SELECT f.user_id, coalesce(array_agg(w.movie_id) FILTER (WHERE w.first_at < f.first_served), '{}') AS movies,
            min(w.first_at) AS first_watch
     FROM f LEFT JOIN watches w ON w.user_id = f.user_id AND w.first_at < $2 GROUP BY f.user_id`, [since, until, releaseId]);
  const popQ = db.query<{ movie_id: string; n: number }>(
    'SELECT movie_id, count(*)::int AS n FROM watches WHERE first_at < $1 GROUP BY movie_id', [until]);
  const moviesQ = db.query<{ id: string; genres: string[] | null; original_language: string | null; runtime: number | null }>(
    'SELECT id, genres, original_language, runtime FROM movies');
  const usersQ = db.query<{ id: number; age: number | null; gender: string | null; occupation: string | null }>(
    `SELECT id, age, gender, occupation FROM users WHERE id IN (
       SELECT DISTINCT user_id FROM served_recommendations WHERE served_at >= $1 AND served_at < $2 AND ($3::text IS NULL OR release_id = $3))`,
    [since, until, releaseId]);
  const countsQ = db.query<{ known: number; meta: number }>(
    'SELECT count(*)::int AS known, count(*) FILTER (WHERE age IS NOT NULL OR gender IS NOT NULL OR occupation IS NOT NULL)::int AS meta FROM users');
  // New users: accounts created in the period (the platform logs them); without account lines,
  // users whose very first watch falls in the period.
  const newUsersQ = db.query<{ user_id: number; first_at: Date; movies: string[] }>(
    `WITH acc AS (SELECT user_id FROM accounts WHERE created_at >= $1 AND created_at < $2)
     SELECT user_id, min(first_at) AS first_at, (array_agg(movie_id ORDER BY first_at, movie_id))[1:3] AS movies
     FROM watches
     WHERE CASE WHEN EXISTS (SELECT 1 FROM acc) THEN user_id IN (SELECT user_id FROM acc) ELSE true END
     GROUP BY user_id HAVING min(first_at) >= $1 AND min(first_at) < $2`, [since, until]);
  const [served, watches, profiles, pop, movies, users, counts, newUsers] = await Promise.all([servedQ, watchesQ, profilesQ, popQ, moviesQ, usersQ, countsQ, newUsersQ]);
  return {
    since: since.getTime(),
    until: until.getTime(),
    releaseId,
    served: served.rows.map((r) => ({ id: Number(r.id), at: r.served_at.getTime(), userId: r.user_id, slot: r.slot, releaseId: r.release_id, movieIds: r.movie_ids, fallback: r.fallback })),
    watches: watches.rows.map((r) => ({ userId: r.user_id, movieId: r.movie_id, firstAt: r.first_at.getTime(), minutes: r.minutes, rating: r.rating })),
    profiles: new Map(profiles.rows.map((r) => [r.user_id, r.movies])),
    firstWatch: new Map(profiles.rows.filter((r) => r.first_watch).map((r) => [r.user_id, r.first_watch!.getTime()])),
    popularity: new Map(pop.rows.map((r) => [r.movie_id, r.n])),
    movies: movies.rows.map((r) => ({ id: r.id, genres: r.genres, language: r.original_language, runtime: r.runtime })),
    users: new Map(users.rows.map((r) => [r.id, r])),
    newUsers: newUsers.rows.map((r) => ({ userId: r.user_id, firstAt: r.first_at.getTime(), movies: r.movies })),
    userCounts: { known: counts.rows[0].known, withMetadata: counts.rows[0].meta },
  };
}
