/**
 * Small synthetic platforms for the loop detectors: users visit, get a list from a history-driven
 * model, and start a movie from it (or find one themselves); new users arrive and start from the
 * cold-start list. Each loop can be switched on for part of the period:
 * - stale: the model stops seeing watches (its view of history freezes, as with ingest down);
 * - amplify: the model pushes ten movies up its lists, more of them every window, and users take
 *   what is on top;
 * - herd: new users all start the first movie of the cold-start list.
 * Deterministic for a seed. The rows are written to Postgres as the services would.
 * simulatedPlatform does the same with the simulator's own users instead (its --amplify switch).
 */
import type { Pool } from '../../lib/db.ts';
import { parseLine } from '../../lib/events/parser.ts';
import { hash32, Rng } from '../../lib/random.ts';
import { Engine } from '../../services/simulator/engine.ts';
import { createWorld } from '../../services/simulator/world.ts';

export interface LoopWorldOptions {
  seed: number;
  start: number;
  windows: number;
  windowMs: number;
  users?: number;
  movies?: number;
  newUsersPerWindow?: number;
  userOffset?: number;
  /** Windows [from, to) during which the model's view of history is frozen. */
  stale?: [number, number];
  amplify?: boolean;
  /** From this window on, new users herd. */
  herdFrom?: number;
}

export interface LoopWorld {
  served: { user: number; at: number; slot: string; ids: string[] }[];
  watches: { user: number; movie: string; at: number }[];
  since: number;
  until: number;
}

const MIN = 60_000;

export function loopWorld(o: LoopWorldOptions): LoopWorld {
  const rng = new Rng(hash32(o.seed, 7));
  const nMovies = o.movies ?? 200, nUsers = o.users ?? 300, off = o.userOffset ?? 0;
  const movies = Array.from({ length: nMovies }, (_, i) => `loop+movie+${i}`);
  // Zipf-like appeal: movie i has weight 1/(i+1).
  const weights = movies.map((_, i) => 1 / (i + 1));
  const totalW = weights.reduce((s, x) => s + x, 0);
  const drawMovie = (r: Rng) => { let x = r.next() * totalW; for (let i = 0; i < nMovies; i++) { x -= weights[i]; if (x <= 0) return movies[i]; } return movies[nMovies - 1]; };
  const coldStart = movies.slice(0, 20);
  // The movies an amplifying model pushes: mid-catalogue ones, so the rise is the model's doing.
  const pushed = movies.slice(40, 50);
  const until = o.start + o.windows * o.windowMs;
  const served: LoopWorld['served'] = [];
  const watches: LoopWorld['watches'] = [];
  const history = new Map<number, { movie: string; at: number }[]>();
  const watch = (user: number, movie: string, at: number) => {
    const h = history.get(user) ?? [];
    if (h.some((w) => w.movie === movie) || at >= until) return;
    h.push({ movie, at });
    history.set(user, h);
    watches.push({ user, movie, at });
  };
  // Every existing user has a little history before the period.
  for (let u = 0; u < nUsers; u++) for (let k = 0; k < 3; k++) watch(off + u, drawMovie(rng), o.start - (k + 1) * 86_400_000);

  const windowOf = (t: number) => Math.floor((t - o.start) / o.windowMs);
  const seen = (user: number, t: number) => {
    const w = windowOf(t);
    const frozenAt = o.stale && w >= o.stale[0] && w < o.stale[1] ? o.start + o.stale[0] * o.windowMs : t;
    return (history.get(user) ?? []).filter((x) => x.at < frozenAt);
  };
  const model = (user: number, t: number): string[] => {
    const h = seen(user, t);
    const r = new Rng(hash32(o.seed, user, h.length));
    const out: string[] = [];
    if (o.amplify) for (const m of pushed.slice(0, Math.min(10, Math.round(windowOf(t) * 1.4)))) if (!h.some((x) => x.movie === m)) out.push(m);
    while (out.length < 10) {
      const m = drawMovie(r);
      if (!out.includes(m) && !h.some((x) => x.movie === m)) out.push(m);
    }
    return out;
  };
  const pickPosition = (r: Rng, n: number, bias: number) => { for (let i = 0; i < n; i++) if (r.chance(bias)) return i; return n - 1; };

  // Existing users: visits about every 40 minutes (events in time order per user).
  for (let u = 0; u < nUsers; u++) {
    const user = off + u;
    for (let t = o.start + rng.int(0, 40 * MIN); t < until; t += rng.int(25 * MIN, 55 * MIN)) {
      const ids = model(user, t);
      served.push({ user, at: t, slot: 'main', ids });
      if (rng.chance(0.6)) {
        const pos = pickPosition(rng, ids.length, o.amplify ? 0.5 : 0.25);
        watch(user, ids[pos], t + rng.int(1 * MIN, 10 * MIN));
      } else if (rng.chance(0.5)) {
        watch(user, drawMovie(rng), t + rng.int(5 * MIN, 20 * MIN));
      }
    }
  }
  // New users: a cold-start list, then a first watch from it.
  for (let w = 0; w < o.windows; w++) {
    for (let k = 0; k < (o.newUsersPerWindow ?? 12); k++) {
      const user = off + nUsers + w * 1000 + k;
      const t = o.start + w * o.windowMs + rng.int(0, o.windowMs - 15 * MIN);
      served.push({ user, at: t, slot: 'main', ids: coldStart });
      const herd = o.herdFrom !== undefined && w >= o.herdFrom;
      watch(user, coldStart[herd ? 0 : pickPosition(rng, coldStart.length, 0.15)], t + rng.int(1 * MIN, 5 * MIN));
    }
  }
  served.sort((a, b) => a.at - b.at);
  return { served, watches, since: o.start, until };
}

/** Writes the world's rows (bulk, by unnest) as the gateway and ingest would have. */
export async function writeLoopWorld(db: Pick<Pool, 'query'>, w: LoopWorld): Promise<void> {
  const s = w.served;
  await db.query(
    `INSERT INTO served_recommendations (served_at, user_id, slot, movie_ids, latency_ms)
     SELECT to_timestamp(t / 1000.0), u, sl, string_to_array(ids, ','), 5 FROM unnest($1::float8[], $2::int[], $3::text[], $4::text[]) AS x(t, u, sl, ids)`,
    [s.map((x) => x.at), s.map((x) => x.user), s.map((x) => x.slot), s.map((x) => x.ids.join(','))]);
  const ws = w.watches;
  await db.query(
    `INSERT INTO watches (user_id, movie_id, first_at, last_at, minutes, max_minute)
     SELECT u, m, to_timestamp(t / 1000.0), to_timestamp(t / 1000.0), 60, 60 FROM unnest($1::int[], $2::text[], $3::float8[]) AS x(u, m, t)
     ON CONFLICT DO NOTHING`,
    [ws.map((x) => x.user), ws.map((x) => x.movie), ws.map((x) => x.at)]);
}

export interface SimulatedPlatformOptions {
  seed: number;
  /** Simulated time of the first activity; the report's period starts `warmupMs` later. */
  start: number;
  warmupMs: number;
  durationMs: number;
  users?: number;
  movies?: number;
  userOffset?: number;
  /** The simulator's --amplify switch (its ramp), off when undefined. */
  amplifyRampMs?: number;
}

/**
 * The simulator's own users (services/simulator/engine.ts, as `--amplify` drives them) on a
 * platform whose recommender lists 20 of the 60 most watched movies so far, drawn by how many
 * watched each (watched ones not removed), answered half a second after each request: what is
 * watched is what gets recommended, the more so the more it is watched. One new activity every 2 s of simulated time; the warm-up
 * is the platform's past (before `since`).
 */
export function simulatedPlatform(o: SimulatedPlatformOptions): LoopWorld & { engine: Engine } {
  const world = createWorld({ seed: o.seed, movies: o.movies ?? 500, users: o.users ?? 3000 });
  const off = o.userOffset ?? 0;
  const since = o.start + o.warmupMs, until = since + o.durationMs;
  const served: LoopWorld['served'] = [];
  const watches: LoopWorld['watches'] = [];
  const watchers = new Map<string, number>();
  const started = new Set<string>();
  let candidates: string[] = [];
  let rankedAt = -Infinity;
  const list = (user: number, t: number): string[] => {
    // The 60 most watched, re-ranked once a simulated minute as a popularity model refreshes.
    if (t - rankedAt >= 60_000) {
      candidates = world.movies.map((m) => m.id)
        .sort((a, b) => (watchers.get(b) ?? 0) - (watchers.get(a) ?? 0) || world.movie(a)!.index - world.movie(b)!.index)
        .slice(0, 60);
      rankedAt = t;
    }
    // 20 of them per list, drawn by how many watched each: the more watched, the more shown.
    const r = new Rng(hash32(o.seed, user, t));
    const pool = [...candidates];
    const out: string[] = [];
    while (out.length < 20 && pool.length) {
      const w = pool.map((id) => 1 + (watchers.get(id) ?? 0));
      let x = r.next() * w.reduce((a, b) => a + b, 0);
      let i = 0;
      while (i < pool.length - 1 && (x -= w[i]) > 0) i++;
      out.push(pool.splice(i, 1)[0]);
    }
    return out;
  };
  const engine: Engine = new Engine(world, new Rng(hash32(o.seed, 9)), {
    emit: (user, line) => {
      const r = parseLine(line);
      if (!r.ok || r.event.kind !== 'watch') return;
      const key = `${user} ${r.event.movieId}`;
      if (started.has(key)) return;
      started.add(key);
      watchers.set(r.event.movieId, (watchers.get(r.event.movieId) ?? 0) + 1);
      if (r.event.atMs < until) watches.push({ user: off + user, movie: r.event.movieId, at: r.event.atMs });
    },
    recommend: (user, t) => {
      const ids = list(user, t);
      if (t < until) served.push({ user: off + user, at: t, slot: 'main', ids });
      engine.at(t + 500, () => engine.answer(user, t, { server: 'test:1', status: 200, movieIds: ids, error: null, latencyMs: 5 }, t + 500));
      return true;
    },
  }, { amplifyRampMs: o.amplifyRampMs });
  for (let t = o.start; t < until; t += 2000) { engine.beginActivity(t); engine.runUntil(t); }
  engine.runUntil(until);
  return { served, watches, since, until, engine };
}
