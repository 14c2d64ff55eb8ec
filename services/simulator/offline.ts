/**
 * Batches of simulator lines without a gateway or a clock, for ingest tests and benchmarks:
 * the same world and behaviour as the live loop, deterministic for a seed, fast enough for a
 * million lines in a few seconds. And a fast producer for such batches.
 *
 * Recommendation requests get a simple answer instead of a gateway's: 20 movies drawn from the
 * most popular, status 200; a small share fail with status 0 as the course platform logs them.
 */
import type { Config } from '../../lib/config.ts';
import type { EventKind } from '../../lib/events/types.ts';
import { kafkaClient, topicOffsets } from '../../lib/kafka.ts';
import { hash32, Rng } from '../../lib/random.ts';
import { malformedLine, type BehaviourOptions, type MalformedKind } from './behaviour.ts';
import { Engine, fastAt, type RecAnswer } from './engine.ts';
import { createWorld, type World } from './world.ts';

export interface GenerateOptions {
  seed: number;
  /** Number of lines, malformed ones included. */
  count: number;
  /** Share of the lines that are malformed; exactly round(count * malformedFraction) of them. */
  malformedFraction?: number;
  /** World size when no `world` is given (defaults 5,000 movies, 50,000 users). */
  movies?: number;
  users?: number;
  /** A world to reuse (must be the one for `seed` if lines are compared across calls). */
  world?: World;
  /** Simulated start time in epoch ms; fixed by default so the lines are the same on every run. */
  startMs?: number;
  /** host:port written in recommendation request lines. */
  server?: string;
  /** Share of recommendation requests that fail (status 0). */
  errorFraction?: number;
  /** Mean simulated gap between new activities (ms); sets how many sessions overlap. */
  arrivalGapMs?: number;
  behaviour?: Partial<BehaviourOptions>;
}

export interface GenerateStats {
  /** Valid lines by kind, and the malformed ones by kind. */
  lines: Record<EventKind, number>;
  malformed: Partial<Record<MalformedKind, number>>;
  recRequests: number;
  recommendedSessions: number;
  discoveredSessions: number;
}

export interface GeneratedLines {
  lines: string[];
  /** Positions in `lines` of the malformed lines. */
  malformed: Set<number>;
  stats: GenerateStats;
  world: World;
}

/** 2025-01-06T00:00:00Z: a fixed start, so that a seed always gives the very same lines. */
export const DEFAULT_START_MS = Date.UTC(2025, 0, 6);

/**
 * Streams `count` lines to `onLine` (index, and whether the line is malformed) without keeping
 * them; generateLines collects them. The malformed positions are chosen up front, so their number
 * is exact whatever the rest of the stream does.
 */
export function forEachLine(opts: GenerateOptions, onLine: (line: string, index: number, malformed: boolean) => void): GenerateStats & { world: World } {
  const { seed, count } = opts;
  if (!Number.isInteger(count) || count < 0) throw new Error(`count must be a non-negative integer, got ${count}`);
  const fraction = opts.malformedFraction ?? 0;
  if (!(fraction >= 0 && fraction <= 1)) throw new Error(`malformedFraction must be within 0..1, got ${fraction}`);
  const world = opts.world ?? createWorld({ seed, movies: opts.movies, users: opts.users });
  const server = opts.server ?? '127.0.0.1:8082';
  const errorFraction = opts.errorFraction ?? 0.02;
  const gap = opts.arrivalGapMs ?? 2000;

  const rng = new Rng(hash32(seed, 10));
  const recRng = new Rng(hash32(seed, 11));
  const badRng = new Rng(hash32(seed, 12));
  const malformedCount = Math.round(count * fraction);
  const badAt = badRng.sample(count, malformedCount);
  let nextBad = 0;
  const malformedKinds: Partial<Record<MalformedKind, number>> = {};

  let index = 0;
  let now = opts.startMs ?? DEFAULT_START_MS;
  const out = (line: string) => {
    while (nextBad < badAt.length && badAt[nextBad] === index) {
      const bad = malformedLine(world, badRng, now);
      malformedKinds[bad.kind] = (malformedKinds[bad.kind] ?? 0) + 1;
      onLine(bad.line, index++, true);
      nextBad++;
    }
    if (index < count) onLine(line, index++, false);
  };

  // The "popularity rule" standing in for a model: 20 of the 60 most popular movies.
  const top = world.byPopularity.slice(0, Math.min(60, world.movieCount)).map((i) => world.movies[i].id);
  const engine: Engine = new Engine(world, rng, {
    emit: (_user, line) => out(line),
    recommend(user, t) {
      let ans: RecAnswer;
      if (recRng.chance(errorFraction)) {
        const timeout = recRng.chance(0.5);
        ans = {
          server, status: 0, movieIds: [],
          error: timeout ? 'java.net.SocketTimeoutException: Read timed out' : 'java.net.ConnectException: Connection refused (Connection refused)',
          latencyMs: timeout ? recRng.int(600, 640) : recRng.int(0, 3),
        };
      } else {
        const ids = top.length <= 20 ? [...top] : recRng.sample(top.length, 20).map((i) => top[i]);
        ans = { server, status: 200, movieIds: recRng.shuffle(ids), error: null, latencyMs: Math.min(599, Math.round(recRng.logNormal(3.6, 0.5))) };
      }
      const answeredAt = t + ans.latencyMs;
      engine.at(answeredAt, () => engine.answer(user, t, ans, answeredAt));
      return true;
    },
  }, opts.behaviour);

  let nextArrival = now;
  while (index < count) {
    if (engine.nextTime() <= nextArrival) {
      now = engine.nextTime();
      engine.runNext();
    } else {
      now = nextArrival;
      engine.beginActivity(now);
      nextArrival += Math.max(1, Math.round(rng.exponential(gap)));
    }
  }
  const s = engine.stats;
  return {
    lines: { ...s.lines }, malformed: malformedKinds, recRequests: s.recRequests,
    recommendedSessions: s.recommendedSessions, discoveredSessions: s.discoveredSessions, world,
  };
}

/** `count` deterministic lines for a seed, and which of them are malformed. */
export function generateLines(opts: GenerateOptions): GeneratedLines {
  const lines: string[] = new Array(opts.count);
  const malformed = new Set<number>();
  const { world, ...stats } = forEachLine(opts, (line, i, bad) => {
    lines[i] = line;
    if (bad) malformed.add(i);
  });
  return { lines, malformed, stats, world };
}

/**
 * `count` lines of past activity for the world that end just before `endMs`: the platform's
 * history before the live loop tunes in, so that recommenders have users with a past to work on.
 * The generator's lines with every time moved by one shift, so the same as its lines otherwise.
 */
export function pastLines(opts: { seed: number; world: World; count: number; endMs: number }): string[] {
  const { lines } = generateLines({ seed: opts.seed, world: opts.world, count: opts.count, errorFraction: 0 });
  const times = lines.map((line) => Date.parse(`${line.slice(0, line.indexOf(','))}Z`));
  const last = times.reduce((m, t) => (t > m ? t : m), -Infinity);
  const shift = opts.endMs - 60_000 - last;
  // Lines carry the time without its Z, as the course logs do.
  return lines.map((line, i) => fastAt(times[i] + shift).atIso.slice(0, -1) + line.slice(line.indexOf(',')));
}

/** True when the topic has never had a message (every partition's high watermark is 0). */
export async function topicIsEmpty(cfg: Config, topic: string): Promise<boolean> {
  const admin = kafkaClient(cfg, 'simulator-history').admin();
  await admin.connect();
  try {
    const offsets = await topicOffsets(admin, topic);
    return offsets.every((o) => Number(o.high) === 0);
  } finally {
    await admin.disconnect();
  }
}
