// The replay world's logic on a tiny data set the tests write themselves (RecBole atomic files):
// which movie a user starts after an answer, the clock, ids, the past, options and the info API.
// No server is needed (see tests/simulator.test.ts 'Kafka' for the replay through Kafka and ingest).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseLine } from '../lib/events/parser.ts';
import type { LogEvent } from '../lib/events/types.ts';
import { listen } from '../lib/http.ts';
import { readMovieLens } from '../lib/movielens/read.ts';
import { Rng } from '../lib/random.ts';
import { createApi, replayInfo } from '../services/simulator/api.ts';
import type { RecAnswer } from '../services/simulator/engine.ts';
import { parseOptions } from '../services/simulator/options.ts';
import { ReplayEngine, replayChoice } from '../services/simulator/replay-engine.ts';
import { createReplayWorld, ReplayClock, replayPastLines, replayStart, type ReplayRating, type ReplayWorld } from '../services/simulator/replay-world.ts';

const DAY = 86_400_000;
const T = Date.UTC(1998, 0, 1);
const dirs: string[] = [];
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

/** A RecBole download of a few movies, two users with demographics and ratings at whole days after T. */
function tinyDataSet(ratings: [user: number, movie: number, rating: number, day: number][]): ReplayWorld {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'marquee-replay-'));
  dirs.push(dir);
  writeFileSync(path.join(dir, 'tiny.item'), [
    'item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq',
    '1\tShawshank Redemption, The\t1994\tDrama',
    '2\tToy Story\t1995\tAnimation Children\'s Comedy',
    '3\tAlien\t1979\tAction Horror Sci-Fi Thriller',
    '4\tFargo\t1996\tCrime Drama Thriller',
    '5\tHeat\t1995\tAction Crime Thriller',
    '6\tBabe\t1995\tChildren\'s Comedy Drama',
  ].join('\n'));
  writeFileSync(path.join(dir, 'tiny.user'), [
    'user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token',
    '1\t24\tM\ttechnician\t85711',
    '2\t53\tF\tother\t94043',
  ].join('\n'));
  writeFileSync(path.join(dir, 'tiny.inter'), [
    'user_id:token\titem_id:token\trating:float\ttimestamp:float',
    ...ratings.map(([u, m, r, d]) => `${u}\t${m}\t${r}\t${(T + d * DAY) / 1000}`),
  ].join('\n'));
  return createReplayWorld(readMovieLens(dir), { name: 'tiny', userOffset: 1000 });
}

// User 1 rated Shawshank before the replay start (day 5), then Toy Story (day 10), Alien (day 11)
// and Fargo (day 20); user 2 is new: Heat (day 6) and Babe (day 30).
const ratings: [number, number, number, number][] = [[1, 1, 5, 0], [1, 2, 4, 10], [1, 3, 2, 11], [1, 4, 5, 20], [2, 5, 3, 6], [2, 6, 1, 30]];
const slug = { shawshank: 'the+shawshank+redemption+1994', toy: 'toy+story+1995', alien: 'alien+1979', fargo: 'fargo+1996', heat: 'heat+1995', babe: 'babe+1995' };

function parsed(line: string): LogEvent {
  const r = parseLine(line);
  if (!r.ok) throw new Error(`expected ${JSON.stringify(line)} to parse, got "${r.reason}"`);
  return r.event;
}

/**
 * Runs the whole replay event by event; the "gateway" answers every request at once (5 ms later)
 * with what `answer(user)` says. Returns the lines in the order they were written.
 */
function replay(world: ReplayWorld, clock: ReplayClock, windowMs: number, answer: (user: number) => string[] | null) {
  const lines: { user: number; line: string }[] = [];
  const requests: { user: number; t: number }[] = [];
  const engine: ReplayEngine = new ReplayEngine(world, clock, new Rng(1), {
    emit: (user, line) => lines.push({ user, line }),
    recommend(user, t) {
      requests.push({ user, t });
      const ids = answer(user);
      const ans: RecAnswer = ids === null
        ? { server: '127.0.0.1:8082', status: 0, movieIds: [], error: 'java.net.SocketTimeoutException: Read timed out', latencyMs: 600 }
        : { server: '127.0.0.1:8082', status: 200, movieIds: ids, error: null, latencyMs: 5 };
      engine.answer(user, t, ans, t + 5);
      return true;
    },
  }, { windowMs });
  while (engine.runNext()) { /* jump from event to event */ }
  expect(engine.finished).toBe(true);
  return { lines, requests, engine, events: lines.map((l) => parsed(l.line)) };
}

describe('replayChoice', () => {
  const upcoming: ReplayRating[] = [
    { movie: 'a', rating: 3, atMs: 100 }, { movie: 'b', rating: 4, atMs: 200 }, { movie: 'c', rating: 5, atMs: 900 },
  ];
  it('takes the best-ranked recommended movie the user rated within the window after the request', () => {
    expect(replayChoice(upcoming, ['x', 'b', 'a'], 50, 500)).toEqual({ index: 1, fromRecommendation: true });
    expect(replayChoice(upcoming, ['a', 'b'], 50, 500)).toEqual({ index: 0, fromRecommendation: true });
  });
  it('goes on with the real next movie when the list holds none rated within the window', () => {
    // c is rated at 900, after 50 + 500.
    expect(replayChoice(upcoming, ['c', 'x'], 50, 500)).toEqual({ index: 0, fromRecommendation: false });
    expect(replayChoice(upcoming, [], 50, 500)).toEqual({ index: 0, fromRecommendation: false });
    expect(replayChoice(upcoming, ['c'], 50, 850)).toEqual({ index: 2, fromRecommendation: true });
  });
});

describe('replay world', () => {
  const world = tinyDataSet(ratings);
  const dataStart = T + 5 * DAY;
  const clock = new ReplayClock(dataStart, Date.UTC(2026, 5, 1), 100_000);

  it('has the data set\'s users (ids shifted by the offset) and movies (the import\'s slugs), and answers their metadata', async () => {
    expect(world.userCount).toBe(2);
    expect(world.movieCount).toBe(6);
    expect([...world.ratingsByUser.keys()].sort()).toEqual([1001, 1002]);
    expect(world.user(1001)).toEqual({ user_id: 1001, age: 24, occupation: 'technician', gender: 'M' });
    expect(world.user(1)).toBeUndefined();
    expect(world.movie(slug.shawshank)).toMatchObject({ title: 'The Shawshank Redemption', year: 1994, genres: ['drama'] });
    const server = await listen(createApi(replayInfo(world)), 0);
    try {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const movie = await (await fetch(`${base}/movie/${slug.toy}`)).json() as Record<string, unknown>;
      expect(Object.keys(movie).sort()).toEqual(['genres', 'id', 'original_language', 'popularity', 'release_date', 'runtime', 'title', 'vote_average', 'vote_count', 'year']);
      expect(movie).toMatchObject({ id: slug.toy, title: 'Toy Story', year: 1995, genres: ['animation', "children's", 'comedy'], popularity: null, vote_average: null });
      expect(await (await fetch(`${base}/user/1002`)).json()).toEqual({ user_id: 1002, age: 53, occupation: 'other', gender: 'F' });
      expect((await fetch(`${base}/user/2`)).status).toBe(404);
      expect(await (await fetch(`${base}/healthz`)).json()).toMatchObject({ world: 'tiny', movies: 6, users: 2, userOffset: 1000 });
    } finally {
      server.close();
    }
  });

  it('maps data-set time linearly onto log time, and finds the replay start by quantile or date', () => {
    expect(clock.toLog(dataStart)).toBe(Date.UTC(2026, 5, 1));
    expect(clock.toLog(dataStart + 100_000 * 60_000)).toBe(Date.UTC(2026, 5, 1) + 60_000);
    expect(clock.toData(clock.toLog(dataStart + 7 * DAY))).toBe(dataStart + 7 * DAY);
    expect(replayStart(world.data, '0')).toBe(T);
    expect(replayStart(world.data, '0.5')).toBe(T + 10 * DAY);
    expect(replayStart(world.data, '1998-01-04')).toBe(T + 3 * DAY);
    expect(() => replayStart(world.data, '1.5')).toThrow(/quantile .* or an ISO date/);
    expect(() => replayStart(world.data, '1999-01-01')).toThrow(/outside the data set's ratings \(1998-01-01T00:00:00.000Z to 1998-01-31/);
    expect(() => new ReplayClock(0, 0, 0)).toThrow(/speed must be a positive number/);
  });

  it('writes the past before the replay start only, ending before the replay\'s log start', () => {
    const past = [...replayPastLines(world, clock)].map(parsed);
    expect(past.map((e) => e.kind)).toEqual(['account', 'watch', 'rate']);
    expect(past.every((e) => e.userId === 1001 && e.atMs < clock.logStart)).toBe(true);
    expect(past[2]).toMatchObject({ kind: 'rate', movieId: slug.shawshank, rating: 5, atMs: clock.toLog(T) });
  });

  it('starts a recommended movie the user rated within the window, else the real next one; each rating once, times monotonic', () => {
    // Always recommend Alien (user 1 rates it a day after Toy Story) and Babe (user 2, 24 days after Heat).
    const { events, requests, engine } = replay(world, clock, 2 * DAY, () => [slug.babe, slug.alien]);
    const of = (user: number) => events.filter((e) => e.userId === user);
    const rated = (user: number) => of(user).filter((e) => e.kind === 'rate').map((e) => e.kind === 'rate' && [e.movieId, e.rating]);
    // User 1: at Toy Story's time Alien is within 2 days, so Alien first (rated 2, as in the data);
    // then Toy Story (Alien is done), then Fargo. Shawshank is the past, not replayed.
    expect(rated(1001)).toEqual([[slug.alien, 2], [slug.toy, 4], [slug.fargo, 5]]);
    // User 2: Babe is 24 days after Heat, outside the window: Heat, then Babe at its own time.
    expect(rated(1002)).toEqual([[slug.heat, 3], [slug.babe, 1]]);
    expect(of(1002)[0].kind).toBe('account');
    expect(of(1001).some((e) => e.kind === 'account')).toBe(false);
    // One request per visit: after taking Alien, user 1 goes on with Toy Story without asking again.
    expect(engine.stats).toMatchObject({ recRequests: 4, recommendedSessions: 2, discoveredSessions: 3, ratings: 5, accounts: 1 });
    // Each user's lines in time order; each activity = request, watch, rating.
    for (const user of [1001, 1002]) {
      const times = of(user).map((e) => e.atMs);
      expect(times).toEqual([...times].sort((a, b) => a - b));
    }
    expect(of(1001).map((e) => e.kind)).toEqual(['recommendation', 'watch', 'rate', 'watch', 'rate', 'recommendation', 'watch', 'rate']);
    // Requests come at the users' real activity times (a session's start before the rating), mapped.
    expect(requests.find((r) => r.user === 1002)!.t).toBe(clock.toLog(T + 6 * DAY - 60_000));
    expect(requests.filter((r) => r.user === 1001).at(-1)!.t).toBe(clock.toLog(T + 20 * DAY - 60_000));
    // Babe at its real time, long after Heat.
    const babe = of(1002).find((e) => e.kind === 'watch' && e.movieId === slug.babe)!;
    expect(babe.atMs).toBeGreaterThanOrEqual(clock.toLog(T + 30 * DAY - 60_000));
  });

  it('never takes a recommended movie outside the window, nor on a failed request', () => {
    const none = replay(world, clock, 0, () => [slug.alien, slug.babe]);
    const order = (r: ReturnType<typeof replay>) => r.events.filter((e) => e.kind === 'rate' && e.userId === 1001).map((e) => e.kind === 'rate' && e.movieId);
    expect(order(none)).toEqual([slug.toy, slug.alien, slug.fargo]);
    // A movie rated exactly at the request's time + window is still within it: Alien is a day and a minute after Toy Story's request.
    expect(order(replay(world, clock, DAY + 60_000, () => [slug.alien]))[0]).toBe(slug.alien);
    expect(order(replay(world, clock, DAY + 59_999, () => [slug.alien]))[0]).toBe(slug.toy);
    const failed = replay(world, clock, 30 * DAY, () => null);
    expect(order(failed)).toEqual([slug.toy, slug.alien, slug.fargo]);
    const recs = failed.events.filter((e) => e.kind === 'recommendation');
    expect(recs.length).toBe(5);
    expect(recs.every((e) => e.kind === 'recommendation' && e.status === 0 && e.error === 'java.net.SocketTimeoutException: Read timed out')).toBe(true);
  });
});

describe('replay visits', () => {
  it('asks for recommendations when a user comes back after an hour away, not within a sitting', () => {
    // User 1 rates three movies ten minutes apart, then one two days later.
    const world = tinyDataSet([[1, 1, 5, 1], [1, 2, 4, 1 + 10 / 1440], [1, 3, 3, 1 + 20 / 1440], [1, 4, 2, 3]]);
    const clock = new ReplayClock(T, Date.UTC(2026, 5, 1), 10_000);
    const { events, requests } = replay(world, clock, 0, () => []);
    expect(requests.map((r) => r.t)).toEqual([clock.toLog(T + DAY - 60_000), clock.toLog(T + 3 * DAY - 60_000)]);
    expect(events.map((e) => e.kind)).toEqual(['account', 'recommendation', 'watch', 'rate', 'watch', 'rate', 'watch', 'rate', 'recommendation', 'watch', 'rate']);
  });
});

describe('simulator options', () => {
  it('takes the world and the replay options from flags or the environment, strictly', () => {
    expect(parseOptions(['--world', 'movielens-100k', '--replay-from=0.7', '--speed', '20000'], {}).values)
      .toEqual({ world: 'movielens-100k', 'replay-from': '0.7', speed: '20000' });
    expect(parseOptions([], { SIMULATOR_WORLD: 'movielens-100k', SIMULATOR_REPLAY_WINDOW: '2d' }).values)
      .toEqual({ world: 'movielens-100k', 'replay-window': '2d' });
    expect(() => parseOptions(['--world', 'movielens-1m'], {})).toThrow('--world must be one of invented, movielens-100k, got "movielens-1m"');
    expect(() => parseOptions(['--world'], {})).toThrow('option --world needs a value');
    expect(() => parseOptions(['--replay_from', '0.5'], {})).toThrow(/unknown option --replay_from/);
    expect(() => parseOptions(['--world', 'movielens-100k', '--history', '1000'], {})).toThrow(/--history is for the invented world/);
    expect(() => parseOptions(['--world', 'movielens-100k', '--rate', '250'], {})).toThrow(/--rate is for the invented world/);
    expect(() => parseOptions(['--replay-from', '0.5'], {})).toThrow(/--replay-from is for the replay world/);
    expect(parseOptions(['--herd', '1', '--new-accounts', '0.06'], { SIMULATOR_NEW_ACCOUNTS: '0.5' }).values)
      .toEqual({ herd: '1', 'new-accounts': '0.06' });
    expect(() => parseOptions(['--world', 'movielens-100k', '--new-accounts', '0.1'], {})).toThrow(/--new-accounts is for the invented world/);
    // npm start sets SIMULATOR_HISTORY for the invented world: with the replay world it is left aside.
    expect(parseOptions(['--world', 'movielens-100k'], { SIMULATOR_HISTORY: '300000', SIMULATOR_RATE: '0' }).values)
      .toEqual({ world: 'movielens-100k', rate: '0' });
  });
});
