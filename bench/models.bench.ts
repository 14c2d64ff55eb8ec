/**
 * How well each model spec would do on the simulator's online metric, measured in process: the
 * simulator's offline generator writes a warm history, every spec ranks for the same sampled
 * requests with the serving code (lib/models), and each list is scored with the simulated user's
 * own chance of starting one of its movies (the behaviour the live simulator draws from). That
 * chance is exact for a list, so no sampling noise sits between two specs; the only noise is
 * which requests were sampled, and both specs answer the same ones.
 *
 *   npm run bench:models [-- --seed 11 --movies 1500 --users 12000 --lines 600000 --requests 4000
 *     --specs models/seed-baseline.json,models/affinity-v1.json]
 *
 * The first spec is the baseline: every other row prints its ratio to it.
 */
import { parseLine } from '../lib/events/parser.ts';
import { hash32, Rng } from '../lib/random.ts';
import { coldStartList, LIST_SIZE, popularityTable, rank, topPopular, type HistoryEntry } from '../lib/models/rank.ts';
import { loadSpec } from '../lib/models/spec.ts';
import { VectorIndex } from '../lib/models/vectors.ts';
import { contentVector } from '../lib/vectors/content.ts';
import { chooseUser, pickChance } from '../services/simulator/behaviour.ts';
import { forEachLine } from '../services/simulator/offline.ts';
import { createWorld, movieInfo } from '../services/simulator/world.ts';
import { benchArgs } from '../testkit/args.ts';

const args = benchArgs('npm run bench:models [-- --seed 11 --movies 1500 --users 12000 --lines 600000 --requests 4000 --specs a.json,b.json]', {
  seed: '11', movies: '1500', users: '12000', lines: '600000', requests: '4000',
  specs: 'models/seed-baseline.json,models/affinity-v1.json,models/taste-v1.json',
});
const seed = args.number('seed', { min: 0, integer: true });
const movies = args.number('movies', { min: 1, integer: true });
const users = args.number('users', { min: 1, integer: true });
const lineCount = args.number('lines', { min: 1, integer: true });
const requests = args.number('requests', { min: 1, integer: true });
const specPaths = args.string('specs').split(',');

interface Acc { minutes: Set<number>; firstAt: number | null; lastAt: number | null; rating: number | null; ratedAt: number | null }

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
    a.minutes.add(e.minute);
    a.firstAt = a.firstAt === null ? e.atMs : Math.min(a.firstAt, e.atMs);
    a.lastAt = a.lastAt === null ? e.atMs : Math.max(a.lastAt, e.atMs);
  } else {
    a.rating = e.rating;
    a.ratedAt = e.atMs;
  }
});
const runtime = new Map(world.movies.map((m) => [m.id, m.runtime]));
const historyOf = (u: number): HistoryEntry[] => [...(histories.get(u) ?? new Map<string, Acc>())].map(([movieId, a]) => ({
  movieId, minutes: a.minutes.size, firstAt: a.firstAt, lastAt: a.lastAt, rating: a.rating, ratedAt: a.ratedAt, runtime: runtime.get(movieId) ?? null,
}));
console.log(`history: ${lineCount.toLocaleString('en')} lines, ${histories.size.toLocaleString('en')} users with history, world ${movies} movies / ${users} users (seed ${seed}), ${Math.round(performance.now() - t0)} ms`);

const index = VectorIndex.from(world.movies.map((m) => ({ id: m.id, embedding: contentVector(movieInfo(m)), popularity: m.popularity, voteAverage: m.vote_count > 0 ? m.vote_average : null, voteCount: m.vote_count })));
const popularityEntries = world.movies.map((m) => [m.id, m.popularity] as const);
const popularity = popularityTable(popularityEntries);
const popular = topPopular(popularityEntries, 100);
const recentCounts = (windowHours: number) => {
  const counts = new Map<string, number>();
  const from = endMs - windowHours * 3_600_000;
  for (const h of histories.values()) for (const [id, a] of h) if (a.firstAt !== null && a.firstAt >= from) counts.set(id, (counts.get(id) ?? 0) + 1);
  return [...counts].map(([movieId, viewers]) => ({ movieId, viewers }));
};

// The same requests for every spec: users drawn as the live simulator draws them.
const rng = new Rng(hash32(seed, 0xbe7c));
const sampled = Array.from({ length: requests }, () => chooseUser(rng, Math.floor(users * 0.9)));
const cold = sampled.filter((u) => !histories.has(u)).length;

interface Row { version: string; chance: number; warm: number; coldChance: number }
const rows: Row[] = [];
for (const path of specPaths) {
  const { spec } = loadSpec(path);
  const cs = spec.params.coldStart;
  const coldStart = coldStartList(cs, { popular, recent: cs.kind === 'recent' ? recentCounts(cs.windowHours) : [] });
  let sum = 0, warmSum = 0, warmN = 0, coldSum = 0;
  for (const u of sampled) {
    const history = historyOf(u);
    const ids = rank(spec, { history, neighbours: (id, k) => index.neighbours(id, k), space: index, popularity, coldStart, now: endMs }).ids.slice(0, LIST_SIZE);
    const p = pickChance(world, world.user(u)!, ids);
    sum += p;
    if (history.length > 0) { warmSum += p; warmN++; } else coldSum += p;
  }
  rows.push({ version: spec.version, chance: sum / requests, warm: warmN > 0 ? warmSum / warmN : NaN, coldChance: cold > 0 ? coldSum / cold : NaN });
}

const pct = (x: number) => (Number.isFinite(x) ? `${(100 * x).toFixed(1)}%` : '-');
console.log(`${requests} requests, ${cold} from users without history (${pct(cold / requests)})\n`);
console.log(`${'spec'.padEnd(22)} ${'pick chance'.padStart(12)} ${'warm users'.padStart(11)} ${'cold users'.padStart(11)} ${'× baseline'.padStart(11)}`);
for (const r of rows) {
  console.log(`${r.version.padEnd(22)} ${pct(r.chance).padStart(12)} ${pct(r.warm).padStart(11)} ${pct(r.coldChance).padStart(11)} ${(r.chance / rows[0].chance).toFixed(2).padStart(11)}`);
}
