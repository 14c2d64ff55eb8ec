/**
 * How well each model spec would do online, in both simulator worlds, measured in process with
 * the serving code (lib/models) ranking for the same requests:
 *
 * - invented world: the simulator's offline generator writes a warm history, every spec ranks for
 *   the same sampled requests, and each list is scored with the simulated user's own chance of
 *   starting one of its movies (the behaviour the live simulator draws from). That chance is exact
 *   for a list, so no sampling noise sits between two specs.
 * - replay world (MovieLens 100K, fetched into .marquee/cache when missing): every visit after the
 *   replay start that the live replay asks at (a user back after an hour away) is a request; the
 *   spec ranks from what the user rated before it, and the list is a hit when the user really
 *   rated one of its movies within the window after the request: the rule by which the replay
 *   world's users take a recommendation (the replay method, Li et al. 2011). Candidates are the
 *   movies rated before the replay start; content vectors from the data set's metadata, behaviour
 *   vectors from the ratings before the replay start; popularity lists as of each request.
 *
 * cowatch specs rank with the lists the inference service builds from Postgres (coWatchLists),
 * built here by the same code from the in-memory watches (lib/models/cowatch-memory.ts): in the
 * invented world from the whole history, "now" just after its last event; in the replay world the
 * co-watch index from the ratings before each data-set day (UTC), the prior as of each request,
 * and every movie in that index may be recommended (as served: no candidate list).
 *
 *   npm run bench:models [-- --seed 11 --movies 1500 --users 12000 --lines 600000 --requests 4000
 *     --replay-from 0.5 --replay-window 1d --specs models/seed-baseline.json,models/cowatch-v1.json]
 *
 * The first spec is the baseline: every other row prints its ratio to it, in each world.
 */
import { parseArgs } from 'node:util';
import { durationMs } from '../lib/duration.ts';
import { num, pct, textTable } from '../lib/eval/table.ts';
import { parseLine } from '../lib/events/parser.ts';
import { hash32, Rng } from '../lib/random.ts';
import { coWatchListsByDay, coWatchListsInMemory, type WatchRow } from '../lib/models/cowatch-memory.ts';
import { rankWithLists, type ServingLists } from '../lib/models/lists.ts';
import { coldStartList, LIST_SIZE, padPopular, popularityTable, topPopular, type HistoryEntry } from '../lib/models/rank.ts';
import { loadSpec, type ModelSpec } from '../lib/models/spec.ts';
import { VectorIndex } from '../lib/models/vectors.ts';
import { factorize, watchWeight, type WatchMatrix } from '../lib/vectors/behaviour.ts';
import { contentVector } from '../lib/vectors/content.ts';
import { chooseUser, pickChance } from '../services/simulator/behaviour.ts';
import { forEachLine } from '../services/simulator/offline.ts';
import { startsVisit } from '../services/simulator/replay-engine.ts';
import { loadReplayWorld, replayStart } from '../services/simulator/replay-world.ts';
import { createWorld, movieInfo } from '../services/simulator/world.ts';

const usage = 'usage: npm run bench:models [-- --seed 11 --movies 1500 --users 12000 --lines 600000 --requests 4000 --replay-from 0.5 --replay-window 1d --specs a.json,b.json]';
const options = {
  seed: { type: 'string', default: '11' }, movies: { type: 'string', default: '1500' }, users: { type: 'string', default: '12000' },
  lines: { type: 'string', default: '600000' }, requests: { type: 'string', default: '4000' },
  'replay-from': { type: 'string', default: '0.5' }, 'replay-window': { type: 'string', default: '1d' },
  specs: { type: 'string', default: 'models/seed-baseline.json,models/affinity-v1.json,models/taste-v1.json,models/cowatch-v1.json' },
} as const;
function parse() {
  try {
    return parseArgs({ args: process.argv.slice(2), strict: true, allowPositionals: false, options }).values;
  } catch (err) {
    console.error(`bench:models: ${(err as Error).message}\n${usage}`);
    process.exit(2);
  }
}
const args = parse();
function count(name: string, text: string): number {
  const v = Number(text);
  if (!Number.isInteger(v) || v < 1) {
    console.error(`bench:models: --${name} must be a positive whole number, got "${text}"\n${usage}`);
    process.exit(2);
  }
  return v;
}
const seed = count('seed', args.seed);
const movies = count('movies', args.movies);
const users = count('users', args.users);
const lineCount = count('lines', args.lines);
const requests = count('requests', args.requests);
const windowMs = durationMs(args['replay-window']);
const specs = args.specs.split(',').map((p) => ({ path: p, spec: loadSpec(p).spec }));

/** Per user and movie: distinct minutes, first and last watch, latest rating. */
interface Acc { minutes: Set<number> | number; firstAt: number | null; lastAt: number | null; rating: number | null; ratedAt: number | null }
const minutesOf = (a: Acc) => (typeof a.minutes === 'number' ? a.minutes : a.minutes.size);

/** Behaviour vectors as `marquee vectors build --kind behaviour` makes them (same factorisation), from in-memory watches. */
function behaviourIndex(histories: ReadonlyMap<number, ReadonlyMap<string, Acc>>): VectorIndex {
  const movieIndex = new Map<string, number>();
  const movieIds: string[] = [];
  const rowPtr: number[] = [0];
  const cols: number[] = [];
  const vals: number[] = [];
  for (const h of histories.values()) {
    for (const [id, a] of h) {
      if (a.firstAt === null) continue;
      let m = movieIndex.get(id);
      if (m === undefined) { m = movieIds.length; movieIndex.set(id, m); movieIds.push(id); }
      cols.push(m);
      vals.push(watchWeight(minutesOf(a)));
    }
    rowPtr.push(cols.length);
  }
  const matrix: WatchMatrix = { users: rowPtr.length - 1, nnz: cols.length, rowPtr: Int32Array.from(rowPtr), cols: Int32Array.from(cols), vals: Float32Array.from(vals), movieIds };
  const b = factorize(matrix, { dim: 32, minWatches: 5 });
  return VectorIndex.from(b.ids.map((id, i) => ({ id, embedding: b.vectors.subarray(i * b.dim, (i + 1) * b.dim), popularity: b.watchers[i] })));
}

/** The index a spec reads: its collection's kind. */
function indexFor(spec: ModelSpec, content: VectorIndex, behaviour: () => VectorIndex): VectorIndex {
  return /behaviour/.test(spec.collection) ? behaviour() : content;
}

/** Ranks as the inference service does (rankWithLists), with lists built from the in-memory history. */
function rankList(spec: ModelSpec, index: VectorIndex, history: HistoryEntry[], lists: ServingLists, now: number): string[] {
  return rankWithLists(spec, lists, { history, neighbours: (id, k) => index.neighbours(id, k), space: index, now }).ids.slice(0, LIST_SIZE);
}

interface WorldScore { rate: number; warm: number; cold: number; requests: number; coldRequests: number }

// ---- invented world ----------------------------------------------------------------------------

async function inventedWorld(): Promise<Map<string, WorldScore>> {
  const t0 = performance.now();
  const world = createWorld({ seed, movies, users });
  const histories = new Map<number, Map<string, Acc>>();
  let endMs = 0;
  forEachLine({ seed, count: lineCount, world }, (line) => {
    const r = parseLine(line);
    if (!r.ok) return;
    const e = r.event;
    if (e.kind !== 'watch' && e.kind !== 'rate') return;
    endMs = Math.max(endMs, e.atMs);
    let h = histories.get(e.userId);
    if (!h) histories.set(e.userId, (h = new Map()));
    let a = h.get(e.movieId);
    if (!a) h.set(e.movieId, (a = { minutes: new Set(), firstAt: null, lastAt: null, rating: null, ratedAt: null }));
    if (e.kind === 'watch') {
      (a.minutes as Set<number>).add(e.minute);
      a.firstAt = a.firstAt === null ? e.atMs : Math.min(a.firstAt, e.atMs);
      a.lastAt = a.lastAt === null ? e.atMs : Math.max(a.lastAt, e.atMs);
    } else {
      a.rating = e.rating;
      a.ratedAt = e.atMs;
    }
  });
  const runtime = new Map(world.movies.map((m) => [m.id, m.runtime]));
  const historyOf = (u: number): HistoryEntry[] => [...(histories.get(u) ?? new Map<string, Acc>())].map(([movieId, a]) => ({
    movieId, minutes: minutesOf(a), firstAt: a.firstAt, lastAt: a.lastAt, rating: a.rating, ratedAt: a.ratedAt, runtime: runtime.get(movieId) ?? null,
  }));
  console.error(`invented world: ${lineCount.toLocaleString('en')} lines of history, ${histories.size.toLocaleString('en')} users with history, ${movies} movies / ${users} users (seed ${seed}), ${Math.round(performance.now() - t0)} ms`);

  const content = VectorIndex.from(world.movies.map((m) => ({ id: m.id, embedding: contentVector(movieInfo(m)), popularity: m.popularity, voteAverage: m.vote_count > 0 ? m.vote_average : null, voteCount: m.vote_count })));
  let behaviour: VectorIndex | null = null;
  const popularityEntries = world.movies.map((m) => [m.id, m.popularity] as const);
  const popularity = popularityTable(popularityEntries);
  const popular = topPopular(popularityEntries, 100);
  const recentCounts = (windowHours: number) => {
    const counts = new Map<string, number>();
    const from = endMs - windowHours * 3_600_000;
    for (const h of histories.values()) for (const [id, a] of h) if (a.firstAt !== null && a.firstAt >= from) counts.set(id, (counts.get(id) ?? 0) + 1);
    return [...counts].map(([movieId, viewers]) => ({ movieId, viewers }));
  };

  // The watches table as ingest would hold it: one row per user and movie watched (rated only: none).
  const watchRows = (): WatchRow[] => [...histories].flatMap(([userId, h]) => [...h].flatMap(([movieId, a]) => (a.firstAt === null ? [] : [{ userId, movieId, firstAt: a.firstAt }])));
  // Serving "now" is just after the last event: the whole history is before it.
  const now = endMs + 1;

  // The same requests for every spec: users drawn as the live simulator draws them.
  const rng = new Rng(hash32(seed, 0xbe7c));
  const sampled = Array.from({ length: requests }, () => chooseUser(rng, Math.floor(users * 0.9)));
  const cold = sampled.filter((u) => !histories.has(u)).length;
  const out = new Map<string, WorldScore>();
  for (const { spec } of specs) {
    const index = indexFor(spec, content, () => (behaviour ??= behaviourIndex(histories)));
    const cs = spec.params.coldStart;
    const coldStart = coldStartList(cs, { popular, recent: cs.kind === 'recent' ? recentCounts(cs.windowHours) : [] });
    const lists: ServingLists = { popularity, popular, coldStart, ...(spec.rule === 'cowatch' ? await coWatchListsInMemory(watchRows(), spec, now) : {}) };
    let sum = 0, warmSum = 0, warmN = 0, coldSum = 0;
    for (const u of sampled) {
      const history = historyOf(u);
      const p = pickChance(world, world.user(u)!, rankList(spec, index, history, lists, now));
      sum += p;
      if (history.length > 0) { warmSum += p; warmN++; } else coldSum += p;
    }
    out.set(spec.version, { rate: sum / requests, warm: warmN > 0 ? warmSum / warmN : NaN, cold: cold > 0 ? coldSum / cold : NaN, requests, coldRequests: cold });
  }
  return out;
}

// ---- replay world ------------------------------------------------------------------------------

async function replayWorld(): Promise<{ scores: Map<string, WorldScore>; describe: string }> {
  const t0 = performance.now();
  const world = loadReplayWorld('movielens-100k', { log: (l) => console.error(l) });
  const dataStart = replayStart(world.data, args['replay-from']);
  const session = 60_000;
  // Every rating as a watch of one minute that starts a minute before it, as the replay writes it.
  const all = world.data.ratings.map((r) => ({ user: r.userId + world.userOffset, movie: world.data.movies.get(r.mlMovieId)!.slug, rating: r.rating, at: r.atMs }));
  const past = all.filter((r) => r.at < dataStart);
  const known = new Set(past.map((r) => r.movie));
  const pastHistories = new Map<number, Map<string, Acc>>();
  for (const r of past) {
    let h = pastHistories.get(r.user);
    if (!h) pastHistories.set(r.user, (h = new Map()));
    h.set(r.movie, { minutes: 1, firstAt: r.at - session, lastAt: r.at - session, rating: r.rating, ratedAt: r.at });
  }
  // Candidates: what the platform had seen by the replay start, with the data set's metadata (no popularity or votes).
  const content = VectorIndex.from(world.movies.filter((m) => known.has(m.id)).map((m) => ({
    id: m.id, embedding: contentVector({ id: m.id, year: m.year, genres: m.genres, original_language: null, popularity: null, vote_average: null }), popularity: null,
  })));
  let behaviour: VectorIndex | null = null;

  // The requests: each visit after the replay start (the live replay asks then), time order.
  interface Req { user: number; at: number; ratings: readonly { movie: string; rating: number; atMs: number }[]; index: number }
  const reqs: Req[] = [];
  for (const [user, ratings] of world.ratingsByUser) {
    ratings.forEach((r, i) => { if (r.atMs >= dataStart && startsVisit(ratings, i)) reqs.push({ user, at: r.atMs - session, ratings, index: i }); });
  }
  reqs.sort((a, b) => a.at - b.at || a.user - b.user);
  const emptyPopularity = popularityTable([]);
  // The watches table as the replay writes it (first_at = rating time − a minute), in time order.
  const watchRows: WatchRow[] = all.map((r) => ({ userId: r.user, movieId: r.movie, firstAt: r.at - session }));
  let coWatchBuilds = 0, coWatchMs = 0;
  const coldReqs = reqs.filter((q) => q.ratings.findIndex((r) => r.atMs - session >= q.at) === 0).length;

  const scores = new Map<string, WorldScore>();
  for (const { spec } of specs) {
    const index = indexFor(spec, content, () => (behaviour ??= behaviourIndex(pastHistories)));
    const cs = spec.params.coldStart;
    // Most watched so far (the slot pads its popular list with it: MovieLens has no popularity), swept in time order.
    const watchers = new Map<string, number>();
    let swept = 0;
    const coWatch = spec.rule === 'cowatch' ? coWatchListsByDay(watchRows, spec) : null;
    let hits = 0, warmHits = 0, warmN = 0, coldHits = 0;
    for (const q of reqs) {
      while (swept < all.length && all[swept].at - session < q.at) { const m = all[swept++].movie; watchers.set(m, (watchers.get(m) ?? 0) + 1); }
      const mostWatched = topPopular(watchers, 100);
      const recent = cs.kind === 'recent' ? recentViewers(all, q.at - cs.windowHours * 3_600_000 + session, q.at + session) : [];
      const popular = padPopular([], mostWatched);
      const coldStart = coldStartList(cs, { popular, recent });
      const lists: ServingLists = { popularity: emptyPopularity, popular, coldStart, ...(coWatch === null ? {} : await coWatch(q.at)) };
      const history: HistoryEntry[] = [];
      for (const r of q.ratings) if (r.atMs - session < q.at) history.push({ movieId: r.movie, minutes: 1, firstAt: r.atMs - session, lastAt: r.atMs - session, rating: r.rating, ratedAt: r.atMs, runtime: null });
      const list = rankList(spec, index, history, lists, q.at);
      const upcoming = new Set(q.ratings.filter((r) => r.atMs - session >= q.at && r.atMs <= q.at + windowMs).map((r) => r.movie));
      const hit = list.some((id) => upcoming.has(id)) ? 1 : 0;
      hits += hit;
      if (history.length > 0) { warmHits += hit; warmN++; } else coldHits += hit;
    }
    if (coWatch !== null) ({ builds: coWatchBuilds, ms: coWatchMs } = coWatch.stats());
    scores.set(spec.version, { rate: hits / reqs.length, warm: warmN > 0 ? warmHits / warmN : NaN, cold: coldReqs > 0 ? coldHits / coldReqs : NaN, requests: reqs.length, coldRequests: coldReqs });
  }
  const describe = `replay world: MovieLens 100K from ${new Date(dataStart).toISOString()} (--replay-from ${args['replay-from']}): ${reqs.length} visits of ${new Set(reqs.map((q) => q.user)).size} users, ${coldReqs} without history; `
    + `${known.size} movies rated before the start are the candidates; hit = the user really rated a listed movie within ${args['replay-window']} after the request`
    + (coWatchBuilds > 0 ? `\ncowatch: co-watch index rebuilt from the ratings before each data-set day (UTC midnight; ${coWatchBuilds} builds, ${Math.round(coWatchMs / 1000)} s), its prior from the starts before each request; its candidates are every movie in that index` : '');
  console.error(`${describe} (${Math.round(performance.now() - t0)} ms)`);
  return { scores, describe };
}

/** Movies by distinct users who started them in [from, to), most first (the slots' "recent" cold start). */
function recentViewers(all: readonly { movie: string; at: number }[], from: number, to: number): { movieId: string; viewers: number }[] {
  let lo = 0, hi = all.length;
  while (lo < hi) { const mid = (lo + hi) >> 1; if (all[mid].at < from) lo = mid + 1; else hi = mid; }
  const counts = new Map<string, number>();
  for (let i = lo; i < all.length && all[i].at < to; i++) counts.set(all[i].movie, (counts.get(all[i].movie) ?? 0) + 1);
  return [...counts].map(([movieId, viewers]) => ({ movieId, viewers }));
}

const invented = await inventedWorld();
const replay = await replayWorld();
const first = specs[0].spec.version;
const anyInvented = invented.values().next().value!;
console.log(`invented world: ${lineCount.toLocaleString('en')} lines of history, ${movies} movies, ${users} users (seed ${seed}); ${requests} requests, ${anyInvented.coldRequests} from users without history; score = the simulated user's chance of starting a listed movie`);
console.log(`${replay.describe}\n`);
console.log(textTable(
  ['spec', 'invented: pick chance', '×', 'warm', 'cold', 'replay: hit in window', '×', 'warm', 'cold'],
  specs.map(({ spec }) => {
    const i = invented.get(spec.version)!, r = replay.scores.get(spec.version)!;
    return [spec.version, pct(i.rate), num(i.rate / invented.get(first)!.rate, 2), pct(i.warm), pct(i.cold), pct(r.rate), num(r.rate / replay.scores.get(first)!.rate, 2), pct(r.warm), pct(r.cold)];
  }),
));
