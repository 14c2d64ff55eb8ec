import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  coldStartList, likeWeight, mergePopularity, neighbourCount, neighboursFromMap, padPopular, popularityTable, rank, rankAffinity, rankCoWatch, rankSeed, rankTaste, topPopular, usesVectors,
  type HistoryEntry, type Neighbour, type RankInput,
} from '../lib/models/rank.ts';
import { CoWatchIndex } from '../lib/models/cowatch.ts';
import { coWatchListsByDay, coWatchListsInMemory, type WatchRow } from '../lib/models/cowatch-memory.ts';
import { coWatchPrior, rankWithLists, type CoWatchLists } from '../lib/models/lists.ts';
import { canonicalJson, loadSpec, parseSpec, SpecError, specHash, type AffinitySpec, type CoWatchSpec, type SeedSpec, type TasteSpec } from '../lib/models/spec.ts';
import { VectorIndex } from '../lib/models/vectors.ts';
import { Rng } from '../lib/random.ts';

const seed = loadSpec('models/seed-baseline.json').spec as SeedSpec;
const affinity = loadSpec('models/affinity-v1.json').spec as AffinitySpec;
const taste = loadSpec('models/taste-v1.json').spec as TasteSpec;

function problems(raw: unknown): string[] {
  try {
    parseSpec(raw, 'x.json');
  } catch (err) {
    expect(err).toBeInstanceOf(SpecError);
    expect((err as Error).message).toContain('x.json');
    return (err as SpecError).problems;
  }
  throw new Error('expected the spec to be rejected');
}

const watched = (movieId: string, o: Partial<HistoryEntry> = {}): HistoryEntry => ({
  movieId, minutes: 100, firstAt: 1000, lastAt: 2000, rating: null, ratedAt: null, runtime: 100, ...o,
});

describe('model specs', () => {
  it('ships a valid seed-baseline and affinity-v1 with the rules the issue asks for', () => {
    expect(seed.rule).toBe('seed-popularity-rating');
    expect(seed.params.unratedRating).toBe(3);
    expect(seed.params.coldStart.kind).toBe('popular');
    expect(affinity.rule).toBe('affinity');
    expect(affinity.params.excludeWatched).toBe(true);
    expect(affinity.params.coldStart.kind).toBe('recent');
    expect(loadSpec('models/seed-baseline.json').path).toBe('models/seed-baseline.json');
    expect(taste.rule).toBe('taste-profile');
    expect(taste.params.excludeWatched).toBe(true);
    expect(taste.params.coldStart.kind).toBe('recent');
    expect(neighbourCount(taste)).toBe(0);
    expect(neighbourCount(seed)).toBe(seed.params.neighboursPerMovie);
  });

  it('rejects an unknown or missing rule, naming the known ones', () => {
    const bad = problems({ ...seed, rule: 'magic' });
    expect(bad).toHaveLength(1);
    expect(bad[0]).toMatch(/^rule: "magic" is not a known rule \(one of seed-popularity-rating, affinity, taste-profile, cowatch\)/);
    const { rule: _rule, ...norule } = seed;
    expect(problems(norule)[0]).toMatch(/^rule: missing/);
  });

  it('names a missing collection, a wrong type and an unknown key', () => {
    const { collection: _c, ...nocollection } = seed;
    expect(problems(nocollection)).toEqual(['collection: missing']);
    const wrongType = problems({ ...seed, params: { ...seed.params, neighboursPerMovie: '20' } });
    expect(wrongType).toHaveLength(1);
    expect(wrongType[0]).toMatch(/^params\.neighboursPerMovie: .*number/);
    expect(problems({ ...affinity, params: { ...affinity.params, popularityPenalty: -1 } })[0]).toMatch(/^params\.popularityPenalty: /);
    expect(problems({ ...seed, extra: 1 })).toEqual(['extra: unknown key']);
    expect(problems({ ...seed, params: { ...seed.params, coldStart: { kind: 'recent', size: 20 } } })).toEqual(['params.coldStart.windowHours: missing']);
    // Params of the other rule are not accepted silently.
    expect(problems({ ...seed, params: affinity.params }).join('\n')).toMatch(/unknown key/);
    expect(problems({ ...taste, params: { ...taste.params, qualityPrior: 11 } })[0]).toMatch(/^params\.qualityPrior: /);
    expect(problems({ ...taste, params: { ...taste.params, neighboursPerMovie: 20 } })).toEqual(['params.neighboursPerMovie: unknown key']);
    expect(problems({ ...seed, version: 'Has Spaces' })[0]).toMatch(/^version: /);
    expect(problems([])).toEqual(['the spec must be a JSON object']);
  });

  it('reports an unreadable or non-JSON file', () => {
    expect(() => loadSpec('models/does-not-exist.json')).toThrow(/cannot read the file/);
    expect(() => loadSpec('package-lock.json')).toThrow(SpecError);
  });

  it('hashes the canonical JSON: key order does not matter, any value does', () => {
    const reordered = JSON.parse(JSON.stringify({ params: seed.params, collection: seed.collection, rule: seed.rule, version: seed.version, description: seed.description }));
    expect(canonicalJson(reordered)).toBe(canonicalJson(seed));
    expect(specHash(parseSpec(reordered))).toBe(specHash(seed));
    expect(specHash(seed)).toBe(createHash('sha256').update(canonicalJson(seed)).digest('hex'));
    expect(specHash({ ...seed, params: { ...seed.params, ratingWeight: 0.51 } })).not.toBe(specHash(seed));
    expect(canonicalJson({ b: [2, { d: 1, c: null }], a: 'x' })).toBe('{"a":"x","b":[2,{"c":null,"d":1}]}');
  });
});

describe('ranking rules', () => {
  // Sources a and b; a's neighbours are x (close) and y (far); b's are y and z.
  const neigh = new Map<string, Neighbour[]>([
    ['a', [{ id: 'x', similarity: 0.9 }, { id: 'y', similarity: 0.5 }, { id: 'b', similarity: 0.4 }]],
    ['b', [{ id: 'z', similarity: 0.8 }, { id: 'y', similarity: 0.7 }, { id: 'a', similarity: 0.4 }]],
  ]);
  const pops = popularityTable([['a', 10], ['b', 10], ['x', 1], ['y', 50], ['z', 5], ['p1', 100], ['p2', 90], ['p3', 80]]);
  const input = (history: HistoryEntry[], o: Partial<RankInput> = {}): RankInput => ({
    history, neighbours: neighboursFromMap(neigh), popularity: pops, coldStart: ['p1', 'p2', 'p3'], now: 3000, ...o,
  });

  it('seed: cold start is the given list', () => {
    expect(rankSeed(seed, input([]))).toEqual({ ids: ['p1', 'p2', 'p3'], source: 'cold-start' });
  });

  it('seed: candidates sorted by popularity plus the source rating, unrated = 3, watched kept', () => {
    // a rated 5, b unrated (3): every neighbour of a outranks those only reached from b.
    const r = rankSeed(seed, input([watched('a', { rating: 5, ratedAt: 1500 }), watched('b')]));
    expect(r.source).toBe('model');
    // From a (rating 5): y (pop 50) > b (pop 10) > x (pop 1). From b only: z, and a (watched, kept).
    expect(r.ids.slice(0, 5)).toEqual(['y', 'b', 'x', 'a', 'z']);
    expect(r.ids.slice(5)).toEqual(['p1', 'p2', 'p3']);
    // With a rated 1 the order between sources flips.
    const low = rankSeed(seed, input([watched('a', { rating: 1, ratedAt: 1500 }), watched('b')]));
    expect(low.ids.slice(0, 3)).toEqual(['y', 'a', 'z']);
    // unratedRating is what an unrated source counts as.
    const asFive = rankSeed({ ...seed, params: { ...seed.params, unratedRating: 5 } }, input([watched('a', { rating: 4, ratedAt: 1500 }), watched('b')]));
    expect(asFive.ids.slice(0, 2)).toEqual(['y', 'a']);
  });

  it('seed: popular cold-start list is the top of the popularity table', () => {
    const list = coldStartList(seed.params.coldStart, { popular: topPopular([['a', 1], ['b', 3], ['c', 2]], 100), recent: [{ movieId: 'a', viewers: 99 }] });
    expect(list).toEqual(['b', 'c', 'a']);
  });

  it('affinity: weights similarity by how much the user liked the source and excludes watched movies', () => {
    const liked = rankAffinity(affinity, input([watched('a', { rating: 5, ratedAt: 1500 }), watched('b', { rating: 2, ratedAt: 1500 })]));
    // b disliked: z (only from b) gets a negative score and is dropped; y is pulled down by b.
    expect(liked.ids).not.toContain('a');
    expect(liked.ids).not.toContain('b');
    expect(liked.ids[0]).toBe('x');
    expect(liked.ids).not.toContain('z');
    expect(liked.ids.slice(-3)).toEqual(['p1', 'p2', 'p3']);
    const flipped = rankAffinity(affinity, input([watched('a', { rating: 2, ratedAt: 1500 }), watched('b', { rating: 5, ratedAt: 1500 })]));
    expect(flipped.ids[0]).toBe('z');
    expect(flipped.ids).not.toContain('x');
  });

  it('affinity: minutes watched are an implicit signal when unrated', () => {
    const p = affinity.params;
    expect(likeWeight(watched('a', { minutes: 100, runtime: 100 }), p)).toBeCloseTo(p.implicitWeight, 6);
    expect(likeWeight(watched('a', { minutes: 45, runtime: 100 }), p)).toBeCloseTo(0, 6);
    expect(likeWeight(watched('a', { minutes: 5, runtime: 100 }), p)).toBeLessThan(0);
    expect(likeWeight(watched('a', { minutes: 0, runtime: null, rating: 4 }), p)).toBe(0.5);
    // Runtime unknown: the default runtime is used.
    expect(likeWeight(watched('a', { minutes: p.defaultRuntimeMinutes, runtime: null }), p)).toBeCloseTo(p.implicitWeight, 6);
    const r = rankAffinity(affinity, input([watched('a', { minutes: 95 }), watched('b', { minutes: 3 })]));
    expect(r.ids[0]).toBe('x');
    expect(r.ids).not.toContain('z');
  });

  it('affinity: popularity is de-biased, and the penalty can be switched off', () => {
    // Two sources liked alike, both neighbours equally similar: the less popular one wins with a penalty.
    const n = neighboursFromMap(new Map([['s', [{ id: 'big', similarity: 0.8 }, { id: 'small', similarity: 0.8 }]]]));
    const pop = popularityTable([['big', 500], ['small', 1]]);
    const h = [watched('s', { rating: 5, ratedAt: 1 })];
    expect(rankAffinity(affinity, input(h, { neighbours: n, popularity: pop, coldStart: [] })).ids).toEqual(['small', 'big']);
    const noPenalty = { ...affinity, params: { ...affinity.params, popularityPenalty: 0 } };
    expect(rankAffinity(noPenalty, input(h, { neighbours: n, popularity: pop, coldStart: [] })).ids).toEqual(['big', 'small']);
  });

  it('affinity: recent sources weigh more than old ones', () => {
    const day = 86_400_000;
    const now = 400 * day;
    const h = [watched('a', { rating: 5, ratedAt: now - 300 * day, lastAt: now - 300 * day }), watched('b', { rating: 5, ratedAt: now - day, lastAt: now - day })];
    expect(rankAffinity(affinity, input(h, { now })).ids[0]).toBe('z');
  });

  it('affinity: cold start from recent watches, padded with popular, de-duplicated', () => {
    const list = coldStartList({ kind: 'recent', size: 4, windowHours: 24 }, {
      popular: ['p1', 'r2', 'p2', 'p3'],
      recent: [{ movieId: 'r1', viewers: 2 }, { movieId: 'r2', viewers: 7 }],
    });
    expect(list).toEqual(['r2', 'r1', 'p1', 'p2']);
    expect(rank(affinity, input([], { coldStart: list }))).toEqual({ ids: list, source: 'cold-start' });
  });

  it('merges popularity with the catalog winning over the vectors, and pads a short popular list with the most watched', () => {
    const m = mergePopularity([['a', 1], ['b', 50], ['c', 3]], [['a', 99], ['d', 10]]);
    expect(m.popular).toEqual(['a', 'b', 'd', 'c']);
    expect(m.table.get('a')).toBe(99);
    expect(m.table.max).toBe(99);
    expect(mergePopularity([], []).popular).toEqual([]);
    expect(padPopular(['a', 'b'], ['b', 'w1', 'w2'])).toEqual(['a', 'b', 'w1', 'w2']);
    const full = Array.from({ length: 20 }, (_, i) => `p${i}`);
    expect(padPopular(full, ['w1'])).toEqual(full);
  });

  it('never answers more than 20 ids, and no duplicates', () => {
    const many = new Map<string, Neighbour[]>([['s', Array.from({ length: 60 }, (_, i) => ({ id: `m${i}`, similarity: 1 - i / 100 }))]]);
    const cold = Array.from({ length: 30 }, (_, i) => `m${i}`);
    for (const spec of [seed, affinity]) {
      const r = rank(spec, input([watched('s', { rating: 5, ratedAt: 1 })], { neighbours: neighboursFromMap(many), coldStart: cold }));
      expect(r.ids).toHaveLength(20);
      expect(new Set(r.ids).size).toBe(20);
    }
  });
});

describe('taste profile', () => {
  // Three directions of taste; each movie sits on one or between two.
  const movies = [
    { id: 'liked', embedding: [1, 0, 0], voteAverage: 6.3, voteCount: 100 },
    { id: 'hated', embedding: [0, 1, 0], voteAverage: 6.3, voteCount: 100 },
    { id: 'near', embedding: [0.95, 0.05, 0.3], voteAverage: 6.3, voteCount: 100 },
    { id: 'near-acclaimed', embedding: [0.95, 0.05, 0.3], voteAverage: 8.3, voteCount: 100 },
    { id: 'near-two-votes', embedding: [0.95, 0.05, 0.3], voteAverage: 9.5, voteCount: 2 },
    { id: 'like-hated', embedding: [0.1, 1, 0.3], voteAverage: 6.3, voteCount: 100 },
    { id: 'other', embedding: [0, 0, 1], voteAverage: null, voteCount: 0 },
  ].map((m) => ({ ...m, popularity: 10 }));
  const space = VectorIndex.from(movies);
  const params = { ...taste.params, qualityWeight: 0.5, qualityShrinkVotes: 0, popularityWeight: 0, recencyHalfLifeDays: null };
  const spec = { ...taste, params };
  const input = (history: HistoryEntry[], o: Partial<RankInput> = {}): RankInput => ({
    history, neighbours: () => [], space, popularity: popularityTable(movies.map((m) => [m.id, m.popularity])), coldStart: ['c1', 'c2'], now: 3000, ...o,
  });
  const history = [watched('liked', { rating: 5, ratedAt: 1500 }), watched('hated', { rating: 1, ratedAt: 1500 })];

  it('scores every movie by its cosine with the liked-minus-disliked profile plus quality, watched excluded', () => {
    const r = rankTaste(spec, input(history));
    expect(r.source).toBe('model');
    expect(r.ids).not.toContain('liked');
    expect(r.ids).not.toContain('hated');
    // Same direction: the 9.5 (from two votes) beats the 8.3 beats the 6.3; the disliked direction comes last.
    expect(r.ids.slice(0, 3)).toEqual(['near-two-votes', 'near-acclaimed', 'near']);
    expect(r.ids.indexOf('like-hated')).toBe(r.ids.length - 3);
    // Padded from the cold-start list after the scored movies.
    expect(r.ids.slice(-2)).toEqual(['c1', 'c2']);
  });

  it('shrinks averages of few votes towards the prior, and leaves movies without votes at the prior', () => {
    const shrunk = rankTaste({ ...spec, params: { ...params, qualityShrinkVotes: 50 } }, input(history));
    expect(shrunk.ids.slice(0, 3)).toEqual(['near-acclaimed', 'near-two-votes', 'near']);
    const noTaste = rankTaste({ ...spec, params: { ...params, qualityWeight: 0 } }, input(history));
    expect(noTaste.ids.slice(0, 3).sort()).toEqual(['near', 'near-acclaimed', 'near-two-votes']);
  });

  it('a disliked history turns the ranking around; no history or no vectors gives the cold-start list', () => {
    const flipped = rankTaste({ ...spec, params: { ...params, qualityWeight: 0 } }, input([watched('liked', { rating: 1, ratedAt: 1500 }), watched('hated', { rating: 5, ratedAt: 1500 })]));
    expect(flipped.ids[0]).toBe('like-hated');
    expect(rank(spec, input([]))).toEqual({ ids: ['c1', 'c2'], source: 'cold-start' });
    expect(rank(spec, input(history, { space: undefined }))).toEqual({ ids: ['c1', 'c2'], source: 'cold-start' });
  });

  it('stops scanning early without changing the answer: the same list as scoring every movie', () => {
    const rng = new Rng(12345);
    const rnd = () => rng.next();
    const records = Array.from({ length: 600 }, (_, i) => ({
      id: `r${i}`, embedding: Array.from({ length: 8 }, () => rnd() - 0.5), popularity: rnd() < 0.1 ? null : 100 * rnd() ** 3,
      voteAverage: rnd() < 0.2 ? null : 1 + 9 * rnd(), voteCount: Math.floor(200 * rnd()),
    }));
    const big = VectorIndex.from(records);
    const pop = popularityTable(records.filter((r) => r.popularity !== null).map((r) => [r.id, r.popularity!] as const));
    for (let trial = 0; trial < 20; trial++) {
      const hist = Array.from({ length: 1 + Math.floor(10 * rnd()) }, () => watched(`r${Math.floor(600 * rnd())}`, { rating: 1 + Math.floor(5 * rnd()), ratedAt: 1500 }));
      const p = { ...taste.params, recencyHalfLifeDays: null, qualityShrinkVotes: trial % 2 ? 10 : 0, popularityWeight: trial % 3 ? 0.2 : 0 };
      const got = rankTaste({ ...taste, params: p }, input(hist, { space: big, popularity: pop, coldStart: [] })).ids;
      // Brute force: the profile, every movie's score, best first (ties by id), watched excluded.
      const profile = new Float64Array(8);
      for (const h of hist) { const v = big.vector(h.movieId)!; const w = likeWeight(h, p); for (let d = 0; d < 8; d++) profile[d] += w * v[d]; }
      const norm = Math.hypot(...profile) || 1;
      const seen = new Set(hist.map((h) => h.movieId));
      const expected = records.map((r, i) => {
        const v = big.votes(i);
        const avg = v === null || v.count <= 0 ? p.qualityPrior : (v.count * v.average + p.qualityShrinkVotes * p.qualityPrior) / (v.count + p.qualityShrinkVotes);
        const cos = big.vector(r.id)!.reduce((sum, c, d) => sum + c * profile[d] / norm, 0);
        return [r.id, cos + p.qualityWeight * (avg - p.qualityPrior) + p.popularityWeight * Math.log1p(pop.get(r.id) ?? 0)] as const;
      }).filter(([id]) => !seen.has(id)).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, 20).map(([id]) => id);
      expect(got, `trial ${trial}`).toEqual(expected);
    }
  });

  it('breaks ties by id, whatever the order of the movies in the index', () => {
    // A neutral rating gives a zero profile: every score is the prior, equal for all these movies.
    const recs = Array.from({ length: 50 }, (_, i) => ({ id: `t${String(49 - i).padStart(2, '0')}`, embedding: [1, i, 0], popularity: 5, voteAverage: null, voteCount: 0 }));
    const pop = popularityTable(recs.map((r) => [r.id, 5] as const));
    const expected = recs.map((r) => r.id).sort().slice(0, 20);
    for (const order of [recs, [...recs].reverse()]) {
      const r = rankTaste({ ...taste, params: { ...taste.params, excludeWatched: false } }, input([watched('t00', { rating: 3, ratedAt: 1 })], { space: VectorIndex.from(order), popularity: pop, coldStart: [] }));
      expect(r.ids).toEqual(expected);
    }
  });

  it('adds popularity when asked, and never answers more than 20 ids', () => {
    const many = VectorIndex.from(Array.from({ length: 40 }, (_, i) => ({ id: `m${i}`, embedding: [1, i / 40, 0], popularity: i, voteAverage: 7, voteCount: 10 })));
    const pop = popularityTable(Array.from({ length: 40 }, (_, i) => [`m${i}`, i] as const));
    const r = rankTaste({ ...spec, params: { ...params, popularityWeight: 5 } }, input([watched('m0', { rating: 5, ratedAt: 1 })], { space: many, popularity: pop }));
    expect(r.ids).toHaveLength(20);
    expect(r.ids[0]).toBe('m39');
    expect(new Set(r.ids).size).toBe(20);
  });
});

describe('vector index', () => {
  const records = [
    { id: 'a', embedding: [1, 0, 0], popularity: 5 },
    { id: 'b', embedding: [2, 0.2, 0], popularity: null },
    { id: 'c', embedding: [0, 1, 0], popularity: 1 },
    { id: 'd', embedding: [0.5, 0.5, 0], popularity: 2 },
  ];

  it('finds the nearest other movies by cosine, most similar first', () => {
    const idx = VectorIndex.from(records);
    expect(idx.size).toBe(4);
    // A rule that reads no neighbour lists (k = 0) never makes the index scan for them.
    idx.warm(['a', 'b'], 0);
    expect(idx.cachedNeighbourLists).toBe(0);
    expect(idx.isCached('a', 0)).toBe(true);
    const n = idx.neighbours('a', 2);
    expect(n.map((x) => x.id)).toEqual(['b', 'd']);
    expect(n[0].similarity).toBeCloseTo(2 / Math.sqrt(4.04), 5);
    expect(idx.neighbours('a', 10).map((x) => x.id)).toEqual(['b', 'd', 'c']);
    expect(idx.neighbours('nope', 3)).toEqual([]);
    expect([...idx.popularities()]).toEqual([['a', 5], ['c', 1], ['d', 2]]);
  });

  it('grows incrementally without touching the old index', () => {
    const idx = VectorIndex.from(records);
    idx.warm(['c'], 2);
    expect(idx.neighbours('c', 1)[0].id).toBe('d');
    const next = idx.withRecords([{ id: 'e', embedding: [0, 1, 0.01], popularity: 3 }]);
    expect(next.size).toBe(5);
    expect(next.neighbours('c', 1)[0].id).toBe('e');
    expect(idx.neighbours('c', 1)[0].id).toBe('d');
    expect(() => next.withRecords([{ id: 'f', embedding: [1, 0], popularity: null }])).toThrow(/dimensions/);
    // Lists carried over from the old cache equal lists computed from scratch.
    const big = Array.from({ length: 60 }, (_, i) => ({ id: `m${i}`, embedding: [Math.sin(i), Math.cos(i * 1.7), Math.sin(i * 0.3) + 0.5], popularity: i }));
    const first = VectorIndex.from(big.slice(0, 50));
    first.warm(big.slice(0, 50).map((r) => r.id), 5);
    const grown = first.withRecords(big.slice(50));
    expect(grown.cachedNeighbourLists).toBe(50);
    const fresh = VectorIndex.from(big);
    for (const r of big) expect(grown.neighbours(r.id, 5).map((n) => n.id)).toEqual(fresh.neighbours(r.id, 5).map((n) => n.id));
  });
});

describe('cowatch', () => {
  const cowatch = loadSpec('models/cowatch-v1.json').spec as CoWatchSpec;
  // u1 watched a, b; u2 a, b, c; u3 a, c: n_a = 3, n_b = n_c = 2; a and b together 2, a and c 2, b and c 1.
  const users = [['a', 'b'], ['a', 'b', 'c', 'a'], ['a', 'c']];
  const opts = { neighbours: 10, alpha: 0.5, minCoWatchers: 1 };

  it('ships a valid cowatch-v1 that reads no vector neighbours', () => {
    expect(cowatch.rule).toBe('cowatch');
    expect(cowatch.params.excludeWatched).toBe(true);
    expect(neighbourCount(cowatch)).toBe(0);
    expect(usesVectors(cowatch)).toBe(false);
    expect(usesVectors(taste)).toBe(true);
    expect(problems({ ...cowatch, params: { ...cowatch.params, alpha: 1.5 } })[0]).toMatch(/^params\.alpha: /);
    expect(problems({ ...cowatch, params: { ...cowatch.params, popularityWindowHours: undefined } })).toEqual(['params.popularityWindowHours: missing']);
  });

  it('scores co-watched movies by the cosine of their audiences (α = 0.5)', async () => {
    const cw = await CoWatchIndex.build(users, opts);
    expect(cw.users).toBe(3);
    expect(cw.watchersOf('a')).toBe(3);
    expect(cw.watchersOf('b')).toBe(2);
    expect(cw.watchersOf('zzz')).toBe(0);
    const a = cw.neighbours('a', 10);
    // 2 / √(3·2) for both, ties by id.
    expect(a.map((n) => n.id)).toEqual(['b', 'c']);
    expect(a[0].similarity).toBeCloseTo(2 / Math.sqrt(6), 6);
    const b = cw.neighbours('b', 10);
    expect(b.map((n) => n.id)).toEqual(['a', 'c']);
    expect(b[1].similarity).toBeCloseTo(1 / 2, 6);
    expect(cw.neighbours('b', 1).map((n) => n.id)).toEqual(['a']);
    expect(cw.neighbours('unknown', 10)).toEqual([]);
  });

  it('α moves the normalisation to the candidate side, and rare pairs can be dropped', async () => {
    const one = await CoWatchIndex.build(users, { ...opts, alpha: 1 });
    // c_ij / n_j: from b, a 2/3 and c 1/2.
    expect(one.neighbours('b', 10).map((n) => [n.id, Number(n.similarity.toFixed(4))])).toEqual([['a', 0.6667], ['c', 0.5]]);
    const zero = await CoWatchIndex.build(users, { ...opts, alpha: 0 });
    // c_ij / n_i: from b, a 2/2 and c 1/2.
    expect(zero.neighbours('b', 10).map((n) => [n.id, n.similarity])).toEqual([['a', 1], ['c', 0.5]]);
    const strict = await CoWatchIndex.build(users, { ...opts, minCoWatchers: 2 });
    expect(strict.neighbours('b', 10).map((n) => n.id)).toEqual(['a']);
    expect((await CoWatchIndex.build([], opts)).size).toBe(0);
  });

  const recentOf = (entries: [string, number][]) => Object.assign(popularityTable(entries), { top: topPopular(entries, 200) });
  const input = (o: Partial<RankInput> = {}): RankInput => ({
    history: [watched('x')], neighbours: () => [], popularity: popularityTable([]), coldStart: ['p', 'z', 'q'], now: 3000,
    coWatch: neighboursFromMap(new Map([['x', [{ id: 'y', similarity: 0.5 }, { id: 'z', similarity: 0.25 }]]])),
    recent: recentOf([['z', 10], ['w', 5]]), ...o,
  });
  const params = { ...cowatch.params, popularityWeight: 1, popularityExponent: 1, recencyHalfLifeDays: null, ratingWeight: 0 };
  const spec = { ...cowatch, params };

  it('blends the co-watch score (over the user\'s best) with recent popularity (over the most started)', () => {
    // y: 0.5/0.5 = 1; z: 0.25/0.5 + 10/10 = 1.5; w: 0 + 5/10 = 0.5; then the cold-start padding.
    expect(rankCoWatch(spec, input()).ids).toEqual(['z', 'y', 'w', 'p', 'q']);
    expect(rank(spec, input()).source).toBe('model');
    // Popularity weighing less than the co-watch gap: y first.
    expect(rankCoWatch({ ...spec, params: { ...params, popularityWeight: 0.2 } }, input()).ids.slice(0, 3)).toEqual(['y', 'z', 'w']);
    // Exponent 2: w's prior is (1/2)² × 1 = 0.25.
    expect(rankCoWatch({ ...spec, params: { ...params, popularityWeight: 1, popularityExponent: 2 } }, input()).ids.slice(0, 3)).toEqual(['z', 'y', 'w']);
  });

  it('drops a source the user disliked when ratings count, leaving recent popularity', () => {
    const disliked = input({ history: [watched('x', { rating: 1, ratedAt: 2000 })] });
    expect(rankCoWatch({ ...spec, params: { ...params, ratingWeight: 1 } }, disliked).ids.slice(0, 2)).toEqual(['z', 'w']);
    expect(rankCoWatch(spec, disliked).ids.slice(0, 3)).toEqual(['z', 'y', 'w']);
  });

  it('never recommends a movie that is not eligible (as of a time before it was first seen), nor a watched one', () => {
    const ids = rankCoWatch(spec, input({ eligible: (id) => id !== 'z', coldStart: ['p', 'q'] })).ids;
    expect(ids).toEqual(['y', 'w', 'p', 'q']);
    const watchedZ = rankCoWatch(spec, input({ history: [watched('x'), watched('z', { firstAt: 10, lastAt: 20 })], coldStart: ['p'] })).ids;
    expect(watchedZ).toEqual(['y', 'w', 'p']);
  });

  it('answers a user without history (or without co-watch data) with the cold-start list', () => {
    expect(rank(spec, input({ history: [] }))).toEqual({ ids: ['p', 'z', 'q'], source: 'cold-start' });
    expect(rank(spec, input({ coWatch: undefined })).source).toBe('cold-start');
  });

  it('the prior favours movies on the rise: recent starts over all-time viewers ^ trendExponent', async () => {
    const cw = await CoWatchIndex.build(users, opts);
    // a: 3 viewers in all, 2 starts lately; b: 2 and 2; new: 1 start, not in the index yet.
    const starts: [string, number][] = [['a', 2], ['b', 2], ['new', 1]];
    const plain = coWatchPrior(starts, cw, 0);
    expect(plain.top).toEqual(['a', 'b', 'new']);
    expect(plain.max).toBe(2);
    const rising = coWatchPrior(starts, cw, 1);
    // a 2/3, b 2/2, new 1/max(1, 0).
    expect(rising.top).toEqual(['b', 'new', 'a']);
    expect(rising.get('a')).toBeCloseTo(2 / 3, 10);
    expect(rising.max).toBe(1);
    const half = coWatchPrior(starts, cw, 0.5);
    expect(half.get('a')).toBeCloseTo(2 / Math.sqrt(3), 10);
    expect(half.top[0]).toBe('b');
  });

  describe('lists from an in-memory history (bench:models) equal the served ones', () => {
    const H = 3_600_000, D = 24 * H, T = 10 * D;
    const spec = { ...cowatch, params: { ...cowatch.params, neighboursPerMovie: 10, popularityWindowHours: 48, trendExponent: 0.5 } };
    const opts = { neighbours: 10, alpha: spec.params.alpha, minCoWatchers: spec.params.minCoWatchers };
    const row = (userId: number, movieId: string, firstAt: number): WatchRow => ({ userId, movieId, firstAt });
    // One row per user and movie, as the watches table holds them; sorted by firstAt.
    const rows = [
      row(2, 'a', T - 5 * D), row(1, 'a', T - 3 * D), row(3, 'a', T - 49 * H), row(1, 'b', T - 47 * H), row(3, 'b', T - 30 * H),
      row(4, 'd', T - 10 * H), row(2, 'c', T - H), row(1, 'c', T), row(2, 'd', T + H), row(5, 'e', T + 2 * H),
    ];
    const ids = ['a', 'b', 'c', 'd', 'e'];
    const same = (got: CoWatchLists, want: CoWatchLists) => {
      expect(got.coWatch.users).toBe(want.coWatch.users);
      for (const id of ids) {
        expect(got.coWatch.neighbours(id, 10)).toEqual(want.coWatch.neighbours(id, 10));
        expect(got.coWatch.watchersOf(id)).toBe(want.coWatch.watchersOf(id));
        expect(got.recent.get(id)).toBe(want.recent.get(id));
      }
      expect(got.recent.top).toEqual(want.recent.top);
      expect(got.recent.max).toBe(want.recent.max);
      // And so the answers: what the bench ranks is what the service would serve.
      const req = { history: [watched('a', { firstAt: T - D, lastAt: T - D })], neighbours: () => [], space: VectorIndex.from([]), now: T };
      const base = { popularity: popularityTable([]), popular: [], coldStart: ['p'] };
      expect(rankWithLists(spec, { ...base, ...got }, req).ids).toEqual(rankWithLists(spec, { ...base, ...want }, req).ids);
    };

    it('as of T: the movies watched before T (not at or after it), the starts in [T − window, T)', async () => {
      // What SELECT array_agg(movie_id) … WHERE first_at < T GROUP BY user_id and recentStarts(48 h, T) return here.
      const want = await CoWatchIndex.build([['a', 'b'], ['a', 'c'], ['a', 'b'], ['d']], opts);
      const wantLists = { coWatch: want, recent: coWatchPrior([['b', 2], ['c', 1], ['d', 1]], want, 0.5) };
      expect(want.neighbours('a', 10).map((n) => n.id)).toEqual(['b', 'c']);
      expect(wantLists.recent.top).toEqual(['b', 'c', 'd']);
      // The reading order does not matter.
      same(await coWatchListsInMemory([...rows].reverse(), spec, T), wantLists);
    });

    it('by day: the index as of the day\'s start, the prior as of each request, one build a day', async () => {
      const lists = coWatchListsByDay(rows, spec);
      const index = await CoWatchIndex.build([['a', 'b'], ['a', 'c'], ['a', 'b'], ['d']], opts);
      // At T + 5 h the window [T − 43 h, T + 5 h) holds c twice (users 2 and 1), d twice, b once (user 3), e once.
      same(await lists(T + 5 * H), { coWatch: index, recent: coWatchPrior([['c', 2], ['d', 2], ['b', 1], ['e', 1]], index, 0.5) });
      expect(lists.stats().builds).toBe(1);
      await lists(T + 20 * H);
      expect(lists.stats().builds).toBe(1);
      // The next day's index knows the watches of day T; the window [T − 23 h, T + 25 h) no longer holds b.
      const next = await CoWatchIndex.build([['a', 'b', 'c'], ['a', 'c', 'd'], ['a', 'b'], ['d'], ['e']], opts);
      same(await lists(T + D + H), { coWatch: next, recent: coWatchPrior([['c', 2], ['d', 2], ['e', 1]], next, 0.5) });
      expect(lists.stats().builds).toBe(2);
      expect(() => coWatchListsByDay([...rows].reverse(), spec)).toThrow(/sorted by firstAt, row 1/);
    });
  });

  it('the other rules honour eligibility too', () => {
    const ids = rank(affinity, { history: [watched('x', { rating: 5, ratedAt: 2000 })], neighbours: neighboursFromMap(new Map([['x', [{ id: 'y', similarity: 0.9 }, { id: 'z', similarity: 0.8 }]]])), popularity: popularityTable([]), coldStart: ['p'], now: 3000, eligible: (id) => id !== 'y' }).ids;
    expect(ids).toEqual(['z', 'p']);
  });
});
