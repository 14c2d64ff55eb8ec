/**
 * The replay world: the simulator's users and movies taken from a real data set (MovieLens, read
 * by lib/movielens) instead of invented tastes. Users are the data set's, their ids shifted by
 * `userOffset`; movies are the slugs `marquee import movielens` gives them, so an import and a
 * replay of the same download name every movie alike. The info API answers the data set's own
 * metadata (title, year, genres; age, gender, occupation) and null for what it does not have.
 *
 * Time: log lines carry wall-clock times, because the gateway stamps what it serves with the wall
 * clock and the online metric compares the two. The data set's time is mapped onto it linearly:
 * the replay start (a moment of the data set) is `logStart`, and `speed` data-set milliseconds
 * pass per real millisecond. Everything before the replay start is the platform's past, written
 * first with the same mapping (so it ends before `logStart`).
 */
import { atFromMs } from '../../lib/events/format.ts';
import { fetchDataset } from '../../lib/datasets/fetch.ts';
import { movieLensLines } from '../../lib/movielens/lines.ts';
import { readMovieLens, type MovieLensData } from '../../lib/movielens/read.ts';

/** The worlds the simulator knows; `invented` is world.ts's. */
export const WORLDS = ['invented', 'movielens-100k'] as const;
export type WorldName = (typeof WORLDS)[number];

/** What GET /movie/<id> answers in the replay world: the contract's fields, null where the data set is silent. */
export interface ReplayMovieInfo {
  id: string;
  title: string;
  year: number | null;
  genres: string[];
  original_language: null;
  popularity: null;
  vote_average: null;
  vote_count: null;
  runtime: null;
  release_date: null;
}

export interface ReplayUserInfo {
  user_id: number;
  age: number | null;
  occupation: string | null;
  gender: string | null;
}

/** One real rating of one user, as the replay uses it. */
export interface ReplayRating {
  /** Movie slug. */
  movie: string;
  rating: 1 | 2 | 3 | 4 | 5;
  /** Data-set time, epoch ms. */
  atMs: number;
}

export interface ReplayWorld {
  readonly name: string;
  readonly userOffset: number;
  readonly movieCount: number;
  readonly userCount: number;
  /** Every rating, time order (then user, then movie). */
  readonly data: MovieLensData;
  /** Every movie, in the data set's id order. */
  readonly movies: readonly ReplayMovieInfo[];
  movie(id: string): ReplayMovieInfo | undefined;
  /** By Marquee user id (data-set id + userOffset). */
  user(id: number): ReplayUserInfo | undefined;
  /** Each Marquee user's ratings, time order. */
  readonly ratingsByUser: ReadonlyMap<number, readonly ReplayRating[]>;
}

export function createReplayWorld(data: MovieLensData, opts: { name?: string; userOffset?: number } = {}): ReplayWorld {
  const userOffset = opts.userOffset ?? 0;
  if (!Number.isInteger(userOffset) || userOffset < 0) throw new Error(`userOffset must be a non-negative integer, got ${userOffset}`);
  const movies = new Map<string, ReplayMovieInfo>();
  const slugOf = new Map<number, string>();
  for (const m of data.movies.values()) {
    slugOf.set(m.mlId, m.slug);
    movies.set(m.slug, {
      id: m.slug, title: m.title, year: m.year, genres: [...m.genres], original_language: null, popularity: null,
      vote_average: null, vote_count: null, runtime: null, release_date: null,
    });
  }
  const users = new Map<number, ReplayUserInfo>();
  for (const u of data.users.values()) users.set(u.id + userOffset, { user_id: u.id + userOffset, age: u.age, occupation: u.occupation, gender: u.gender });
  const ratingsByUser = new Map<number, ReplayRating[]>();
  for (const r of data.ratings) {
    const id = r.userId + userOffset;
    let list = ratingsByUser.get(id);
    if (!list) ratingsByUser.set(id, (list = []));
    list.push({ movie: slugOf.get(r.mlMovieId)!, rating: r.rating, atMs: r.atMs });
    // A rater missing from the user file is still a user of the platform, without demographics.
    if (!users.has(id)) users.set(id, { user_id: id, age: null, occupation: null, gender: null });
  }
  return {
    name: opts.name ?? 'movielens',
    userOffset,
    movieCount: movies.size,
    userCount: users.size,
    data,
    movies: [...movies.values()],
    movie: (id) => movies.get(id),
    user: (id) => users.get(id),
    ratingsByUser,
  };
}

/** The named data set, fetched into the cache when missing (`marquee datasets fetch`'s code), as a replay world. */
export function loadReplayWorld(name: Exclude<WorldName, 'invented'>, opts: { userOffset?: number; log?: (line: string) => void } = {}): ReplayWorld {
  const fetched = fetchDataset(name, opts.log);
  return createReplayWorld(readMovieLens(fetched.dir), { name, userOffset: opts.userOffset });
}

/**
 * Where the replay starts, in data-set time: `from` is a quantile of the rating times (0.5 = the
 * median rating) or an ISO-8601 date. Either must fall inside the data set's span.
 */
export function replayStart(data: MovieLensData, from: string): number {
  const r = data.ratings;
  if (r.length === 0) throw new Error('the data set holds no ratings to replay');
  const first = r[0].atMs, last = r[r.length - 1].atMs;
  let at: number;
  if (/^(0(\.\d+)?|1(\.0+)?)$/.test(from)) {
    at = r[Math.floor(Number(from) * (r.length - 1))].atMs;
  } else if (/^\d{4}-\d{2}-\d{2}/.test(from) && Number.isFinite(Date.parse(from))) {
    at = Date.parse(/[zZ]|[+-]\d{2}:?\d{2}$/.test(from) || from.length === 10 ? from : `${from}Z`);
  } else {
    throw new Error(`--replay-from must be a quantile of the rating times within 0..1 (e.g. 0.5) or an ISO date (e.g. 1998-01-01), got "${from}"`);
  }
  if (at < first || at > last) throw new Error(`--replay-from ${from} is outside the data set's ratings (${new Date(first).toISOString()} to ${new Date(last).toISOString()})`);
  return at;
}

/** The linear map between data-set time and log (wall-clock) time. */
export class ReplayClock {
  constructor(
    /** Data-set time of the replay start (epoch ms). */
    readonly dataStart: number,
    /** Log time the replay start maps to (epoch ms). */
    readonly logStart: number,
    /** Data-set ms per log ms. */
    readonly speed: number,
  ) {
    if (!(speed > 0) || !Number.isFinite(speed)) throw new Error(`speed must be a positive number, got ${speed}`);
  }
  toLog(dataMs: number): number {
    return Math.floor(this.logStart + (dataMs - this.dataStart) / this.speed);
  }
  toData(logMs: number): number {
    return this.dataStart + (logMs - this.logStart) * this.speed;
  }
}

/**
 * The platform's past: every rating before the replay start as `marquee import movielens` writes
 * it (an account line, `minutes` watch lines, the rating), each time mapped through the clock, so
 * the last of them comes before `clock.logStart`. Time order, as the import yields them.
 */
export function* replayPastLines(world: ReplayWorld, clock: ReplayClock, minutes = 1): Generator<string> {
  const past = { ...world.data, ratings: world.data.ratings.filter((r) => r.atMs < clock.dataStart) };
  for (const line of movieLensLines(past, { minutes, userOffset: world.userOffset })) {
    const comma = line.indexOf(',');
    const at = clock.toLog(Date.parse(`${line.slice(0, comma)}Z`));
    yield atFromMs(at).atIso.slice(0, -1) + line.slice(comma);
  }
}
