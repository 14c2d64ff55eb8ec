/**
 * The ranking rules as pure functions: the same code ranks for the inference service and for
 * offline evaluation, so an offline score says something about what the service would serve.
 * Inputs are plain data (a user's history, a way to get a movie's neighbours, popularity, the
 * cold-start list, the time of the request); nothing here does I/O or reads the clock.
 */
import type { AffinitySpec, CoWatchSpec, ColdStart, ModelSpec, SeedSpec, TasteSpec } from './spec.ts';

/** How many ids an answer holds at most (the HTTP contract). */
export const LIST_SIZE = 20;

/** One movie the user watched or rated (or both), as known at the time of the request. */
export interface HistoryEntry {
  movieId: string;
  /** Distinct minutes seen (0 when the movie was only rated). */
  minutes: number;
  /** First and last time seen (ms since epoch), null when only rated. */
  firstAt: number | null;
  lastAt: number | null;
  /** The user's latest rating 1–5, null when unrated. */
  rating: number | null;
  ratedAt: number | null;
  /** The movie's runtime in minutes from the catalog, null when unknown. */
  runtime: number | null;
}

export interface Neighbour {
  id: string;
  /** Cosine similarity in [-1, 1]. */
  similarity: number;
}

/** A movie's k nearest other movies, most similar first ([] when the movie has no vector). */
export type NeighbourSource = (movieId: string, k: number) => readonly Neighbour[];

export interface PopularityTable {
  get(movieId: string): number | undefined;
  /** The largest popularity in the table (for normalising), at least 0. */
  readonly max: number;
}

/** The whole collection, for rules that score every movie rather than neighbours of a few. */
export interface VectorSpace {
  readonly dim: number;
  /** Movie ids by position. */
  readonly ids: readonly string[];
  /** The movie's unit vector, undefined when the collection has none. */
  vector(id: string): ArrayLike<number> | undefined;
  /** The vote average and count of the movie at a position, null when unknown. */
  votes(position: number): { average: number; count: number } | null;
  /** The unit vectors, row-major: the movie at position i is data[i × dim … (i + 1) × dim). */
  readonly data: Float32Array;
}

export interface RankInput {
  history: readonly HistoryEntry[];
  neighbours: NeighbourSource;
  /** Needed by taste-profile; without it that rule answers with the cold-start list. */
  space?: VectorSpace;
  popularity: PopularityTable;
  /** The model's cold-start list (see coldStartList); also pads short answers. */
  coldStart: readonly string[];
  /** The time of the request, or asOf (ms since epoch). */
  now: number;
  /**
   * Movies that may be recommended; absent: all. As of a past time, only those seen before it (a
   * movie first seen later did not exist then). The cold-start list must already respect it.
   */
  eligible?: (movieId: string) => boolean;
  /** Needed by cowatch: neighbours by co-watching, from the history before `now`. */
  coWatch?: NeighbourSource;
  /** Needed by cowatch: its popularity prior per movie (recent starts, see coWatchPrior in lists.ts). */
  recent?: RecentPopularity;
}

/** A popularity table with its movies most popular first (at most a few hundred). */
export interface RecentPopularity extends PopularityTable {
  readonly top: readonly string[];
}

export interface Ranked {
  ids: string[];
  /** 'cold-start' when the user has no usable history, 'model' otherwise. */
  source: 'model' | 'cold-start';
}

export function popularityTable(entries: Iterable<readonly [string, number]>): PopularityTable {
  const map = new Map<string, number>();
  let max = 0;
  for (const [id, p] of entries) {
    const v = Number.isFinite(p) && p > 0 ? p : 0;
    map.set(id, v);
    if (v > max) max = v;
  }
  return { get: (id) => map.get(id), max };
}

export function neighboursFromMap(map: ReadonlyMap<string, readonly Neighbour[]>): NeighbourSource {
  return (id, k) => (map.get(id) ?? []).slice(0, k);
}

/** The n most popular ids, most popular first (ties by id so the list is stable). */
export function topPopular(entries: Iterable<readonly [string, number]>, n: number): string[] {
  return [...entries]
    .filter(([, p]) => Number.isFinite(p))
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .slice(0, n)
    .map(([id]) => id);
}

/**
 * The popularity the serving code ranks with: catalog values over the vectors' metadata (the
 * catalog is refreshed more often), as a table and as the list of the 100 most popular.
 */
export function mergePopularity(fromVectors: Iterable<readonly [string, number]>, fromCatalog: Iterable<readonly [string, number]>): { table: PopularityTable; popular: string[]; size: number } {
  const merged = new Map<string, number>(fromVectors as Iterable<[string, number]>);
  for (const [id, p] of fromCatalog) merged.set(id, p);
  return { table: popularityTable(merged), popular: merged.size > 0 ? topPopular(merged, 100) : [], size: merged.size };
}

/** A popular list padded with the most watched movies while it is shorter than a list (a fresh install knows little popularity). */
export function padPopular(popular: readonly string[], mostWatched: readonly string[]): string[] {
  if (popular.length >= LIST_SIZE) return [...popular];
  const have = new Set(popular);
  return popular.concat(mostWatched.filter((id) => !have.has(id))).slice(0, 100);
}

export interface ColdStartData {
  /** Most popular first (catalog popularity; see topPopular). */
  popular: readonly string[];
  /** Movies by how many users started watching them within the spec's window, most first. */
  recent: readonly { movieId: string; viewers: number }[];
}

/** The list served to a user with no history: fixed popular, or most watched lately padded with popular. */
export function coldStartList(coldStart: ColdStart, data: ColdStartData): string[] {
  const size = Math.min(coldStart.size, 100);
  const out: string[] = [];
  const seen = new Set<string>();
  const push = (id: string) => {
    if (out.length < size && !seen.has(id)) { seen.add(id); out.push(id); }
  };
  if (coldStart.kind === 'recent') {
    [...data.recent].sort((a, b) => b.viewers - a.viewers || (a.movieId < b.movieId ? -1 : 1)).forEach((r) => push(r.movieId));
  }
  data.popular.forEach(push);
  return out;
}

/** The last time the user did anything with the movie, for choosing recent sources. */
const lastActivity = (h: HistoryEntry): number => Math.max(h.lastAt ?? -Infinity, h.ratedAt ?? -Infinity, h.firstAt ?? -Infinity);

/** The sources used for candidates: the most recently active entries first, at most max. */
export function selectSources(history: readonly HistoryEntry[], max: number): HistoryEntry[] {
  return [...history].sort((a, b) => lastActivity(b) - lastActivity(a) || (a.movieId < b.movieId ? -1 : 1)).slice(0, max);
}

/** log-scaled popularity in [0, 1]: raw popularity is heavy-tailed, a few blockbusters would swamp a linear scale. */
export function normalisedPopularity(pop: PopularityTable, id: string): number {
  const p = pop.get(id) ?? 0;
  return pop.max > 0 ? Math.log1p(p) / Math.log1p(pop.max) : 0;
}

/**
 * How much the user liked a movie, in about [-1, 1]: from the rating when there is one,
 * otherwise from the share of the runtime watched (an implicit signal, scaled by implicitWeight).
 */
type LikeParams = Pick<AffinitySpec['params'], 'neutralRating' | 'neutralShare' | 'implicitWeight' | 'defaultRuntimeMinutes'>;

export function likeWeight(h: HistoryEntry, p: LikeParams): number {
  if (h.rating !== null) return (h.rating - p.neutralRating) / 2;
  const runtime = h.runtime !== null && h.runtime > 0 ? h.runtime : p.defaultRuntimeMinutes;
  const share = Math.min(1, Math.max(0, h.minutes / runtime));
  return (p.implicitWeight * (share - p.neutralShare)) / (1 - p.neutralShare);
}

const before = (a: readonly [string, number], b: readonly [string, number]): boolean => a[1] > b[1] || (a[1] === b[1] && a[0] < b[0]);

function finish(scored: Map<string, number>, input: RankInput, exclude: ReadonlySet<string> | null): Ranked {
  const eligible = input.eligible;
  // Only the best LIST_SIZE are needed: a small sorted buffer beats sorting every candidate.
  const top: [string, number][] = [];
  for (const entry of scored) {
    if (exclude?.has(entry[0]) || (eligible !== undefined && !eligible(entry[0]))) continue;
    if (top.length === LIST_SIZE && !before(entry, top[LIST_SIZE - 1])) continue;
    let p = top.length < LIST_SIZE ? top.length : LIST_SIZE - 1;
    if (top.length < LIST_SIZE) top.push(entry);
    while (p > 0 && before(entry, top[p - 1])) { top[p] = top[p - 1]; p--; }
    top[p] = entry;
  }
  const out = top.map(([id]) => id);
  const used = new Set(out);
  // Short answers are padded from the cold-start list rather than served short.
  for (const id of input.coldStart) {
    if (out.length >= LIST_SIZE) break;
    if (used.has(id) || exclude?.has(id)) continue;
    out.push(id);
    used.add(id);
  }
  return { ids: out, source: 'model' };
}

function coldStartAnswer(input: RankInput): Ranked {
  return { ids: input.coldStart.slice(0, LIST_SIZE), source: 'cold-start' };
}

/**
 * The seed's rule: candidates are the neighbours of recently watched movies; each is scored by
 * popularity mixed with the user's rating of the movie it came from (unrated counts as
 * unratedRating), keeping the best score when several sources lead to it. Similarity itself
 * does not order the candidates, as in the seed.
 */
export function rankSeed(spec: SeedSpec, input: RankInput): Ranked {
  const p = spec.params;
  if (input.history.length === 0) return coldStartAnswer(input);
  const scored = new Map<string, number>();
  for (const s of selectSources(input.history, p.maxSources)) {
    const rating = s.rating ?? p.unratedRating;
    const fromSource = (p.ratingWeight * (rating - 1)) / 4;
    for (const n of input.neighbours(s.movieId, p.neighboursPerMovie)) {
      const score = p.popularityWeight * normalisedPopularity(input.popularity, n.id) + fromSource;
      const prior = scored.get(n.id);
      if (prior === undefined || score > prior) scored.set(n.id, score);
    }
  }
  const exclude = p.excludeWatched ? new Set(input.history.map((h) => h.movieId)) : null;
  return finish(scored, input, exclude);
}

/**
 * Similarity weighted by how much the user liked each source: a candidate's score is the sum
 * over sources of like(source) × similarity^exponent × recency decay. Disliked sources count
 * against their neighbours. Scores are then divided by a popularity term so that blockbusters
 * the user has likely found alone do not crowd out closer matches.
 */
export function rankAffinity(spec: AffinitySpec, input: RankInput): Ranked {
  const p = spec.params;
  if (input.history.length === 0) return coldStartAnswer(input);
  const scored = new Map<string, number>();
  for (const s of selectSources(input.history, p.maxSources)) {
    const w = sourceWeight(s, p, input.now);
    if (w === 0) continue;
    for (const n of input.neighbours(s.movieId, p.neighboursPerMovie)) {
      if (n.similarity < p.minSimilarity || n.similarity <= 0) continue;
      const contribution = w * (p.similarityExponent === 1 ? n.similarity : p.similarityExponent === 2 ? n.similarity * n.similarity : Math.pow(n.similarity, p.similarityExponent));
      scored.set(n.id, (scored.get(n.id) ?? 0) + contribution);
    }
  }
  const penalty = p.popularityPenalty > 0 ? penalties(input.popularity, p.popularityPenalty) : null;
  for (const [id, score] of scored) {
    if (score <= 0) scored.delete(id);
    else if (penalty !== null) scored.set(id, score * penalty(id));
  }
  const exclude = p.excludeWatched ? new Set(input.history.map((h) => h.movieId)) : null;
  return finish(scored, input, exclude);
}

// The de-biasing factor per movie depends only on the table and the exponent: computed once each.
const penaltyCache = new WeakMap<PopularityTable, { exponent: number; factors: Map<string, number> }>();

/** 1 / (1 + ln(1 + popularity)) ** exponent, memoised per popularity table. */
function penalties(pop: PopularityTable, exponent: number): (id: string) => number {
  let c = penaltyCache.get(pop);
  if (c === undefined || c.exponent !== exponent) penaltyCache.set(pop, (c = { exponent, factors: new Map() }));
  const factors = c.factors;
  return (id) => {
    let f = factors.get(id);
    if (f === undefined) {
      const base = 1 + Math.log1p(pop.get(id) ?? 0);
      f = 1 / (exponent === 0.5 ? Math.sqrt(base) : Math.pow(base, exponent));
      factors.set(id, f);
    }
    return f;
  };
}

/** A source's like weight, decayed by how long ago the user last touched it (halfLifeDays null: no decay). */
function sourceWeight(s: HistoryEntry, p: LikeParams & { recencyHalfLifeDays: number | null }, now: number): number {
  const w = likeWeight(s, p);
  if (p.recencyHalfLifeDays === null) return w;
  return w * Math.pow(0.5, Math.max(0, now - lastActivity(s)) / (p.recencyHalfLifeDays * 86_400_000));
}

/**
 * Taste profile: the sources' vectors summed with their like weights (disliked ones subtract),
 * normalised; each movie then scores cosine(profile, movie) + qualityWeight × (shrunk vote
 * average − prior) + popularityWeight × ln(1 + popularity). A user whose sources have no vectors
 * (or cancel out) is ranked by quality and popularity alone.
 */
export function rankTaste(spec: TasteSpec, input: RankInput): Ranked {
  const p = spec.params;
  const space = input.space;
  if (input.history.length === 0 || space === undefined || space.dim === 0) return coldStartAnswer(input);
  const profile = new Float64Array(space.dim);
  for (const s of selectSources(input.history, p.maxSources)) {
    const v = space.vector(s.movieId);
    if (v === undefined) continue;
    const w = sourceWeight(s, p, input.now);
    for (let d = 0; d < profile.length; d++) profile[d] += w * v[d];
  }
  let norm = 0;
  for (let d = 0; d < profile.length; d++) norm += profile[d] * profile[d];
  if (norm > 0) {
    norm = Math.sqrt(norm);
    for (let d = 0; d < profile.length; d++) profile[d] /= norm;
  }
  const prior = priorTerms(space, input.popularity, p);
  const exclude = p.excludeWatched ? new Set(input.history.map((h) => h.movieId)) : null;
  // Only the best few positions are needed: enough for the list even if every excluded movie is among them.
  const want = LIST_SIZE + (exclude?.size ?? 0);
  const topPos: number[] = [];
  const topScore: number[] = [];
  // Movies in order of their prior: a cosine is at most 1, so once prior + 1 cannot reach the
  // current last place no later movie can either, and the scan stops (exact, not approximate).
  const { order, terms, rows } = prior;
  const { dim, ids } = space;
  const eligible = input.eligible;
  for (let j = 0; j < order.length; j++) {
    const full = topPos.length === want;
    // The margin covers float32 rows whose norm rounds a hair above 1.
    if (full && terms[j] + 1 + 1e-6 < topScore[want - 1]) break;
    if (eligible !== undefined && !eligible(ids[order[j]])) continue;
    let cosine = 0;
    for (let d = 0, o = j * dim; d < dim; d++, o++) cosine += profile[d] * rows[o];
    const score = cosine + terms[j];
    // Ties go to the smaller id, as in finish(), so the answer does not depend on positions in the index.
    if (full && (score < topScore[want - 1] || (score === topScore[want - 1] && ids[order[j]] > ids[topPos[want - 1]]))) continue;
    let k = full ? want - 1 : topPos.length;
    while (k > 0 && (score > topScore[k - 1] || (score === topScore[k - 1] && ids[order[j]] < ids[topPos[k - 1]]))) {
      topPos[k] = topPos[k - 1];
      topScore[k] = topScore[k - 1];
      k--;
    }
    topPos[k] = order[j];
    topScore[k] = score;
  }
  const scored = new Map<string, number>();
  topPos.forEach((i, k) => scored.set(space.ids[i], topScore[k]));
  return finish(scored, input, exclude);
}

/** The movies best prior first: their positions, priors, and vectors copied in that order (a sequential scan). */
interface Priors { order: Int32Array; terms: Float64Array; rows: Float32Array }

// quality and popularity do not depend on the user: computed once per space, popularity table and parameters.
const priorCache = new WeakMap<VectorSpace, { popularity: PopularityTable; key: string; priors: Priors }>();

/** Per movie: qualityWeight × (shrunk vote average − prior) + popularityWeight × ln(1 + popularity). */
function priorTerms(space: VectorSpace, popularity: PopularityTable, p: TasteSpec['params']): Priors {
  const key = `${p.qualityWeight}|${p.qualityPrior}|${p.qualityShrinkVotes}|${p.popularityWeight}`;
  const cached = priorCache.get(space);
  if (cached !== undefined && cached.popularity === popularity && cached.key === key) return cached.priors;
  const n = space.ids.length;
  const byPosition = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const v = space.votes(i);
    const average = v === null || v.count <= 0 ? p.qualityPrior : (v.count * v.average + p.qualityShrinkVotes * p.qualityPrior) / (v.count + p.qualityShrinkVotes);
    byPosition[i] = p.qualityWeight * (average - p.qualityPrior) + p.popularityWeight * Math.log1p(popularity.get(space.ids[i]) ?? 0);
  }
  const order = Int32Array.from(byPosition.keys()).sort((a, b) => byPosition[b] - byPosition[a] || a - b);
  const dim = space.dim;
  const terms = new Float64Array(n);
  const rows = new Float32Array(n * dim);
  order.forEach((i, j) => {
    terms[j] = byPosition[i];
    rows.set(space.data.subarray(i * dim, (i + 1) * dim), j * dim);
  });
  const priors = { order, terms, rows };
  priorCache.set(space, { popularity, key, priors });
  return priors;
}

/**
 * Co-watch: each source s (the user's most recent movies) adds w_s × sim(s, j) to the movies j
 * watched with it, w_s = recency decay × (1 + ratingWeight × (rating − neutral) / 2), at least 0.
 * The sums are divided by the user's best one, so 1 is "most co-watched with this user's movies",
 * and popularityWeight × (prior / the largest prior) ^ popularityExponent is added; the movies
 * with the largest priors are candidates too. A user whose movies nobody else watched is thus
 * ranked by recent popularity alone.
 */
export function rankCoWatch(spec: CoWatchSpec, input: RankInput): Ranked {
  const p = spec.params;
  if (input.history.length === 0 || input.coWatch === undefined) return coldStartAnswer(input);
  const scored = new Map<string, number>();
  for (const s of selectSources(input.history, p.maxSources)) {
    const liked = s.rating === null ? 1 : Math.max(0, 1 + (p.ratingWeight * (s.rating - p.neutralRating)) / 2);
    const decay = p.recencyHalfLifeDays === null ? 1 : Math.pow(0.5, Math.max(0, input.now - lastActivity(s)) / (p.recencyHalfLifeDays * 86_400_000));
    const w = liked * decay;
    if (w === 0) continue;
    for (const n of input.coWatch(s.movieId, p.neighboursPerMovie)) scored.set(n.id, (scored.get(n.id) ?? 0) + w * n.similarity);
  }
  let best = 0;
  for (const v of scored.values()) if (v > best) best = v;
  if (best > 0) for (const [id, v] of scored) scored.set(id, v / best);
  const recent = input.recent;
  if (recent !== undefined && recent.max > 0 && p.popularityWeight > 0) {
    for (const id of recent.top) if (!scored.has(id)) scored.set(id, 0);
    for (const [id, v] of scored) {
      const r = (recent.get(id) ?? 0) / recent.max;
      if (r > 0) scored.set(id, v + p.popularityWeight * (p.popularityExponent === 1 ? r : Math.pow(r, p.popularityExponent)));
    }
  }
  const exclude = p.excludeWatched ? new Set(input.history.map((h) => h.movieId)) : null;
  return finish(scored, input, exclude);
}

/** How many neighbours per source the rule reads from the vectors (0: none, so none need computing). */
export function neighbourCount(spec: ModelSpec): number {
  return spec.rule === 'taste-profile' || spec.rule === 'cowatch' ? 0 : spec.params.neighboursPerMovie;
}

/** Whether the rule ranks with movie vectors (cowatch ranks from the watch history alone). */
export function usesVectors(spec: ModelSpec): boolean {
  return spec.rule !== 'cowatch';
}

/** Ranks by the spec's rule: ≤ LIST_SIZE ids, best first. */
export function rank(spec: ModelSpec, input: RankInput): Ranked {
  switch (spec.rule) {
    case 'seed-popularity-rating': return rankSeed(spec, input);
    case 'affinity': return rankAffinity(spec, input);
    case 'taste-profile': return rankTaste(spec, input);
    case 'cowatch': return rankCoWatch(spec, input);
  }
}
