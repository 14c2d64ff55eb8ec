/**
 * How simulated users behave, shared by the live traffic loop and the offline generator so both
 * write the same kind of log: who shows up, what they pick from a recommendation list, what they
 * find by themselves, how long they watch, how they rate. Also the malformed lines injected on
 * request.
 */
import { atFromMs, formatEvent } from '../../lib/events/format.ts';
import { parseLine } from '../../lib/events/parser.ts';
import type { Rng } from '../../lib/random.ts';
import type { User, World } from './world.ts';

export const MINUTE_MS = 60_000;

export interface BehaviourOptions {
  /** Share of activities that start with a recommendation request (when a recommender is there). */
  recommendFraction: number;
  /** Share of finished sessions followed by a rating. */
  rateFraction: number;
  /** Share of new activities that are an account creation by a new user (while ids remain). */
  newAccountFraction: number;
  /** Share of the world's users already registered when the simulation starts. */
  initialUsersFraction: number;
  /**
   * A feedback loop on purpose (issue 15's homogenisation): users who register during the run
   * ask for recommendations on their first visit and start the first movie of that list (the
   * default list, as they have no history).
   */
  herdNewUsers?: boolean;
  /**
   * A feedback loop on purpose (issue 15's amplification): users trust what the platform pushes
   * more and more. Over this much simulated time from the run's first activity, the chance that a
   * visit asks for a list and that the user then starts, whatever their taste, a movie of it drawn
   * by how often the platform has shown it (the one seen everywhere) grows from 0 to 1. So the
   * most recommended movies take a growing share of what is watched, window after window; a model
   * that learns from watches (a popularity list) then pushes them further.
   */
  amplifyRampMs?: number;
}

export const defaultBehaviour: BehaviourOptions = {
  recommendFraction: 0.6,
  rateFraction: 0.2,
  newAccountFraction: 0.02,
  initialUsersFraction: 0.9,
};

/**
 * A registered user to start an activity: half of the time anyone, half of the time one of the
 * heavy users (low ids, the early adopters), so activity is skewed as on a real platform.
 */
export function chooseUser(rng: Rng, registered: number): number {
  const u = rng.next();
  return Math.floor(registered * (rng.chance(0.5) ? u : u * u * u));
}

/**
 * Which movie (index) the user picks from a recommended list, or -1 for none. They scan from the
 * top and look at each position with a decaying probability (position bias), and start a movie
 * they looked at with a probability that grows steeply with how much they like it. So a list
 * with the user's favourites near the top wins far more watches than a random one.
 */
export function pickRecommended(world: World, rng: Rng, user: User, ids: readonly string[]): number {
  let look = 1;
  for (const id of ids) {
    if (rng.next() < look) {
      const m = world.movie(id);
      if (m !== undefined && rng.next() < startChance(world.affinity(user, m.index))) return m.index;
    }
    look *= LOOK_DECAY;
  }
  return -1;
}

/** Each position down the list is looked at this much less often. */
const LOOK_DECAY = 0.75;
/** The chance of starting a movie the user looked at, by affinity. */
const startChance = (a: number): number => 0.9 * a * a * a * a;

/**
 * The bandwagon pick of the amplification switch: a movie of the list, drawn with a weight of how
 * many times the platform has shown it so far (taste plays no part); -1 for a list of unknown ids.
 */
export function pickMostShown(world: World, rng: Rng, ids: readonly string[], shown: ReadonlyMap<string, number>): number {
  let total = 0;
  for (const id of ids) if (world.movie(id) !== undefined) total += shown.get(id) ?? 1;
  let x = rng.next() * total;
  for (const id of ids) {
    const m = world.movie(id);
    if (m === undefined) continue;
    x -= shown.get(id) ?? 1;
    if (x < 0) return m.index;
  }
  return -1;
}

/** The exact chance that pickRecommended picks something from this list (for scoring models without sampling). */
export function pickChance(world: World, user: User, ids: readonly string[]): number {
  let none = 1;
  let look = 1;
  for (const id of ids) {
    const m = world.movie(id);
    if (m !== undefined) none *= 1 - look * startChance(world.affinity(user, m.index));
    look *= LOOK_DECAY;
  }
  return 1 - none;
}

/**
 * What a user finds without help: a handful of candidates seen around the platform (drawn by
 * popularity), picked with a weight that follows taste, more sharply for picky users.
 */
export function discoverMovie(world: World, rng: Rng, user: User): number {
  const n = 12;
  let best = -1;
  let total = 0;
  // Weighted reservoir of one: each candidate replaces the current pick with weight w / total.
  for (let i = 0; i < n; i++) {
    const idx = world.popularitySampler.draw(rng);
    const a = world.affinity(user, idx);
    const w = Math.pow(a, 2 + 4 * user.pickiness);
    total += w;
    if (total > 0 && rng.next() * total < w) best = idx;
  }
  return best >= 0 ? best : world.popularitySampler.draw(rng);
}

export interface SessionPlan {
  /** First minute chunk requested. */
  first: number;
  /** Last minute chunk requested (inclusive). */
  last: number;
}

/** Which minutes a session streams: usually from the start, sometimes resumed; liked movies are watched longer. */
export function planSession(world: World, rng: Rng, user: User, movieIndex: number): SessionPlan {
  const runtime = world.movies[movieIndex].runtime;
  const a = world.affinity(user, movieIndex);
  const first = rng.chance(0.1) ? rng.int(1, Math.floor(runtime / 2)) : 0;
  const share = Math.min(1, Math.max(0.03, rng.normal(0.25 + 0.85 * a, 0.2)));
  const last = Math.min(runtime - 1, first + Math.max(0, Math.round((runtime - first) * share) - 1));
  return { first, last };
}

/** A rating that follows taste with some noise. */
export function ratingFor(world: World, rng: Rng, user: User, movieIndex: number): 1 | 2 | 3 | 4 | 5 {
  const a = world.affinity(user, movieIndex);
  const r = Math.round(1 + 4 * a + rng.normal(0, 0.6));
  return (r < 1 ? 1 : r > 5 ? 5 : r) as 1 | 2 | 3 | 4 | 5;
}

export const MALFORMED_KINDS = [
  'garbage', 'bad-rating', 'negative-user', 'truncated', 'unknown-verb', 'bad-timestamp', 'bad-minute', 'missing-field',
] as const;
export type MalformedKind = (typeof MALFORMED_KINDS)[number];

/** The ids a malformed line borrows, so that it looks like the world's own lines gone wrong. */
export interface MalformedSource { userCount: number; movies: readonly { id: string }[] }

/**
 * A line that looks like it came from a broken producer and that the parser must reject.
 * Each candidate is checked with parseLine; one that happens to parse (a truncation that still
 * makes sense, say) is replaced by plain garbage, so a caller can count on every one failing.
 */
export function malformedLine(world: MalformedSource, rng: Rng, atMs: number, kind: MalformedKind = rng.pick(MALFORMED_KINDS)): { line: string; kind: MalformedKind } {
  const user = rng.int(0, world.userCount - 1);
  const movie = world.movies[rng.int(0, world.movies.length - 1)].id;
  const time = atFromMs(atMs).atIso.slice(0, -1);
  let line: string;
  switch (kind) {
    case 'garbage': {
      let s = '';
      const len = rng.int(1, 60);
      for (let i = 0; i < len; i++) s += String.fromCharCode(rng.int(33, 126));
      line = s;
      break;
    }
    case 'bad-rating':
      line = `${time},${user},GET /rate/${movie}=${rng.pick([0, 6, 7, 9, 10, -1])}`;
      break;
    case 'negative-user':
      line = `${time},-${user + 1},GET /data/m/${movie}/${rng.int(0, 90)}.mpg`;
      break;
    case 'truncated': {
      const full = formatEvent({
        kind: 'recommendation', ...atFromMs(atMs), userId: user, server: '127.0.0.1:8082', status: 200,
        movieIds: [movie, world.movies[rng.int(0, world.movies.length - 1)].id], error: null, latencyMs: rng.int(5, 300),
      });
      const base = rng.chance(0.5) ? full : `${time},${user},GET /data/m/${movie}/${rng.int(0, 90)}.mpg`;
      line = base.slice(0, rng.int(1, base.length - 2));
      break;
    }
    case 'unknown-verb':
      line = `${time},${user},${rng.pick(['POST /data/m/', 'GET /stream/', 'DELETE /rate/', 'PUT /data/m/'])}${movie}/${rng.int(0, 90)}.mpg`;
      break;
    case 'bad-timestamp':
      line = `${rng.pick(['2025-13-01T10:00:00', '2025-02-30T10:00:00', 'yesterday', '2025-01-01 10:00:00', '1700000000'])},${user},GET /create_account`;
      break;
    case 'bad-minute':
      line = `${time},${user},GET /data/m/${movie}/${rng.pick(['x', '-3', '1.5', ''])}.mpg`;
      break;
    case 'missing-field':
      line = `${time},GET /rate/${movie}=4`;
      break;
  }
  if (parseLine(line).ok) line = `#malformed ${kind} ${rng.int(0, 1e9)}`;
  return { line, kind };
}

/** The text the course platform (a Java client) logs for a failed recommendation request. */
export function javaErrorText(err: unknown, host: string, timedOut: boolean): string {
  if (timedOut) return 'java.net.SocketTimeoutException: Read timed out';
  const e = err as NodeJS.ErrnoException | undefined;
  const clean = (s: string) => s.replace(/[\r\n]+/g, ' ').replaceAll('\u0000', ' ').slice(0, 300);
  switch (e?.code) {
    case 'ECONNREFUSED': return 'java.net.ConnectException: Connection refused (Connection refused)';
    case 'ECONNRESET': return 'java.net.SocketException: Connection reset';
    case 'ENOTFOUND': case 'EAI_AGAIN': return `java.net.UnknownHostException: ${clean(host)}`;
    case 'EHOSTUNREACH': case 'ENETUNREACH': return 'java.net.NoRouteToHostException: No route to host (Host unreachable)';
    default: return `java.io.IOException: ${clean(e?.message ?? String(err))}`;
  }
}
