/**
 * Offline evaluation: split the stored history at a cutoff; for the users who started movies
 * after it, hide those movies, ask a model spec for its 20 movies as of the cutoff, and score the
 * list against what they went on to watch. The list is made the way the inference service makes
 * it (lib/models: history as of the cutoff, the spec's vectors, the same popularity and cold-start
 * lists, the same rank()), in process, so an offline score speaks for what would be served.
 */
import type { Config } from '../config.ts';
import type { Pool } from '../db.ts';
import { chromaClient, fetchAllVectors, openCollection } from '../models/collection.ts';
import { catalogPopularity, readHistory, recentWatchCounts } from '../models/history.ts';
import { coldStartList, LIST_SIZE, mergePopularity, neighbourCount, padPopular, rank, selectSources, type HistoryEntry } from '../models/rank.ts';
import type { LoadedSpec } from '../models/spec.ts';
import { VectorIndex, type VectorRecord } from '../models/vectors.ts';
import type { EvalSettings } from './settings.ts';
import { num, pct, textTable } from './table.ts';

type Queryable = Pick<Pool, 'query'>;

export class MissingVectorsError extends Error {
  constructor(readonly collection: string, detail: string) {
    super(`vector collection "${collection}" is not available: ${detail}`);
    this.name = 'MissingVectorsError';
  }
}

export type VectorLoader = (collection: string) => Promise<VectorRecord[]>;

/** Reads a whole collection from ChromaDB; a missing collection is a MissingVectorsError. */
export function chromaVectors(cfg: Pick<Config, 'chroma'>): VectorLoader {
  return async (name) => {
    const client = chromaClient(cfg.chroma.url);
    let collection;
    try {
      collection = await openCollection(client, name);
    } catch (err) {
      const msg = (err as Error).message ?? String(err);
      if (/not (be )?found|does not exist/i.test(msg) || (err as Error).name === 'ChromaNotFoundError') throw new MissingVectorsError(name, msg);
      throw err;
    }
    return fetchAllVectors(collection);
  };
}

export interface SplitUser {
  userId: number;
  /** Movies the user started at or after the cutoff: the hidden answers. */
  targets: Set<string>;
}

export interface Split {
  cutoff: Date;
  /** How the cutoff was chosen. */
  cutoffRule: string;
  /** Users who started a movie after the cutoff (all of them), and the evaluated sample. */
  activeUsers: number;
  users: SplitUser[];
  /** Movies in the catalog (the movies table). */
  catalogSize: number;
  /** Popularity percentile (0..1, 1 = most watched) of every movie watched before the cutoff. */
  popularityPercentile: Map<string, number>;
}

/** The cutoff from the settings: a fixed time, a holdout before the last watch, or a quantile of watch times. */
export async function chooseCutoff(db: Queryable, s: EvalSettings['offline']): Promise<{ cutoff: Date | null; rule: string }> {
  if (s.cutoff) return { cutoff: new Date(s.cutoff), rule: `fixed at ${s.cutoff}` };
  if (s.holdoutMs !== null) {
    const { rows } = await db.query<{ last: Date | null }>('SELECT max(first_at) AS last FROM watches');
    const last = rows[0].last;
    return { cutoff: last ? new Date(last.getTime() - s.holdoutMs) : null, rule: `${s.holdoutMs / 3_600_000} h before the last watch` };
  }
  const { rows } = await db.query<{ at: Date | null }>('SELECT percentile_disc($1::float8) WITHIN GROUP (ORDER BY first_at) AS at FROM watches', [1 - s.testFraction]);
  return { cutoff: rows[0].at, rule: `the last ${Math.round(s.testFraction * 100)}% of watches after it` };
}

/** The split at `cutoff` (or the one the settings choose); a deterministic sample of at most maxUsers users. */
export async function makeSplit(db: Queryable, s: EvalSettings['offline'], cutoffOverride?: Date): Promise<Split> {
  const chosen = cutoffOverride ? { cutoff: cutoffOverride, rule: `fixed at ${cutoffOverride.toISOString()}` } : await chooseCutoff(db, s);
  const cutoff = chosen.cutoff ?? new Date();
  const [active, sample, catalog, counts] = await Promise.all([
    db.query<{ n: number }>('SELECT count(DISTINCT user_id)::int AS n FROM watches WHERE first_at >= $1', [cutoff]),
    // md5 order: a fixed pseudo-random sample, the same for every spec and every run.
    db.query<{ user_id: number; movies: string[] }>(
      `SELECT user_id, array_agg(movie_id) AS movies FROM watches WHERE first_at >= $1
       GROUP BY user_id ORDER BY md5(user_id::text), user_id LIMIT $2`, [cutoff, s.maxUsers]),
    db.query<{ n: number }>('SELECT count(*)::int AS n FROM movies'),
    db.query<{ movie_id: string; n: number }>('SELECT movie_id, count(*)::int AS n FROM watches WHERE first_at < $1 GROUP BY movie_id ORDER BY n, movie_id', [cutoff]),
  ]);
  const popularityPercentile = new Map<string, number>();
  const total = counts.rows.length;
  counts.rows.forEach((r, i) => popularityPercentile.set(r.movie_id, total > 1 ? i / (total - 1) : 1));
  return {
    cutoff,
    cutoffRule: chosen.cutoff ? chosen.rule : 'no watches stored',
    activeUsers: active.rows[0].n,
    users: sample.rows.map((r) => ({ userId: r.user_id, targets: new Set(r.movies) })),
    catalogSize: catalog.rows[0].n,
    popularityPercentile,
  };
}

export interface OfflineScores {
  version: string;
  path: string;
  specHash: string;
  users: number;
  /** Users without any history before the cutoff (served the cold-start list). */
  coldStartUsers: number;
  /** Share of users with at least one hidden movie in their 20. */
  hitAt20: number | null;
  /** Mean NDCG@20 with binary relevance. */
  ndcgAt20: number | null;
  /** Mean share of a user's hidden movies found in their 20. */
  recallAt20: number | null;
  /** Distinct movies recommended over all users, over the catalog size. */
  coverage: number | null;
  distinctMovies: number;
  /** Mean popularity percentile of the recommended movies (1 = only the most watched; 0 = never watched). */
  popularityBias: number | null;
  vectors: number;
  ms: number;
}

/** One user's list scored against their hidden movies. */
export function scoreList(ids: readonly string[], targets: ReadonlySet<string>, k = LIST_SIZE): { hit: boolean; ndcg: number; recall: number; hits: number } {
  let dcg = 0;
  let hits = 0;
  ids.slice(0, k).forEach((id, i) => {
    if (targets.has(id)) { hits++; dcg += 1 / Math.log2(i + 2); }
  });
  let idcg = 0;
  for (let i = 0; i < Math.min(k, targets.size); i++) idcg += 1 / Math.log2(i + 2);
  return { hit: hits > 0, ndcg: idcg > 0 ? dcg / idcg : 0, recall: targets.size > 0 ? hits / targets.size : 0, hits };
}

export interface EvaluateOptions {
  vectors: VectorLoader;
  /** Called now and then (activities heartbeat from it). */
  progress?: (p: { phase: string; done: number; total: number }) => void;
  /** Histories read at once. */
  concurrency?: number;
}

/** A very long window: watch counts over the whole history before the cutoff. */
const ALL_HISTORY_HOURS = 24 * 365 * 200;

/** The spec's answers for the split's users as of the cutoff, scored. */
export async function evaluateSpec(db: Queryable, split: Split, loaded: LoadedSpec, opts: EvaluateOptions): Promise<OfflineScores & { lists: Map<number, string[]> }> {
  const started = performance.now();
  const { spec } = loaded;
  const cutoff = split.cutoff;
  const progress = opts.progress ?? (() => undefined);

  // The serving lists, built with the inference engine's helpers, but as of the cutoff.
  progress({ phase: `${spec.version}: vectors`, done: 0, total: split.users.length });
  const records = split.users.length > 0 ? await opts.vectors(spec.collection) : [];
  const index = VectorIndex.from(records);
  const merged = mergePopularity(index.popularities(), (await catalogPopularity(db)).rows);
  const popularity = merged.table;
  let popular = merged.popular;
  if (popular.length < LIST_SIZE) popular = padPopular(popular, (await recentWatchCounts(db, ALL_HISTORY_HOURS, cutoff, 100)).map((w) => w.movieId));
  const cs = spec.params.coldStart;
  const recent = cs.kind === 'recent' ? await recentWatchCounts(db, cs.windowHours, cutoff, 100) : [];
  const coldStart = coldStartList(cs, { popular, recent });

  // Histories as of the cutoff, a few at a time.
  const histories = new Map<number, HistoryEntry[]>();
  const queue = [...split.users];
  const workers = Array.from({ length: Math.min(opts.concurrency ?? 4, queue.length) }, async () => {
    for (let u = queue.shift(); u; u = queue.shift()) {
      histories.set(u.userId, await readHistory(db, u.userId, cutoff, { timeoutMs: 30_000 }));
      if (histories.size % 200 === 0) progress({ phase: `${spec.version}: histories`, done: histories.size, total: split.users.length });
    }
  });
  await Promise.all(workers);
  const withHistory = [...histories.values()].filter((h) => h.length > 0).length;
  if (withHistory > 0 && index.size === 0) throw new MissingVectorsError(spec.collection, 'the collection holds no vectors');

  // Neighbour lists of every source in a few passes over the vectors rather than one scan per source.
  const k = neighbourCount(spec);
  const sources = [...new Set([...histories.values()].flatMap((h) => selectSources(h, spec.params.maxSources).map((e) => e.movieId)))];
  for (let i = 0; i < sources.length; i += 256) {
    index.warm(sources.slice(i, i + 256), k);
    progress({ phase: `${spec.version}: neighbours`, done: Math.min(sources.length, i + 256), total: sources.length });
    await new Promise((r) => setImmediate(r));
  }

  let hits = 0, ndcg = 0, recall = 0, cold = 0, popSum = 0, popN = 0;
  const recommended = new Set<string>();
  const lists = new Map<number, string[]>();
  for (const u of split.users) {
    const history = histories.get(u.userId)!;
    if (history.length === 0) cold++;
    const ranked = rank(spec, { history, neighbours: (id, n) => index.neighbours(id, n), space: index, popularity, coldStart, now: cutoff.getTime() });
    const s = scoreList(ranked.ids, u.targets);
    if (s.hit) hits++;
    ndcg += s.ndcg;
    recall += s.recall;
    for (const id of ranked.ids) {
      recommended.add(id);
      popSum += split.popularityPercentile.get(id) ?? 0;
      popN++;
    }
    lists.set(u.userId, ranked.ids);
  }
  const n = split.users.length;
  const mean = (x: number) => (n > 0 ? x / n : null);
  return {
    version: spec.version,
    path: loaded.path,
    specHash: loaded.hash,
    users: n,
    coldStartUsers: cold,
    hitAt20: mean(hits),
    ndcgAt20: mean(ndcg),
    recallAt20: mean(recall),
    coverage: split.catalogSize > 0 ? recommended.size / split.catalogSize : null,
    distinctMovies: recommended.size,
    popularityBias: popN > 0 ? popSum / popN : null,
    vectors: index.size,
    ms: Math.round(performance.now() - started),
    lists,
  };
}

export interface OfflineComparison {
  passed: boolean;
  reason: string;
  /** (candidate − main) / main on hit@20. */
  relativeDifference: number | null;
  table: string;
  numbers: Record<string, number | string | null>;
}

/**
 * The gate: enough users, and the candidate's hit@20 at least minRelativeDifference relative to
 * main's. Too few users fails rather than passes: an empty or tiny history is no evidence.
 */
export function compareOffline(split: Split, candidate: OfflineScores, main: OfflineScores, s: EvalSettings['offline']): OfflineComparison {
  const users = candidate.users;
  let rel: number | null = null;
  if (candidate.hitAt20 !== null && main.hitAt20 !== null) {
    rel = main.hitAt20 > 0 ? (candidate.hitAt20 - main.hitAt20) / main.hitAt20 : candidate.hitAt20 > 0 ? Infinity : 0;
  }
  let passed: boolean;
  let reason: string;
  if (users < s.minUsers) {
    passed = false;
    reason = `not enough users: ${users} active after the cutoff ${split.cutoff.toISOString()}, ${s.minUsers} needed`;
  } else if (rel !== null && rel >= s.minRelativeDifference) {
    passed = true;
    reason = `hit@20 ${pct(candidate.hitAt20)} for ${candidate.version} vs ${pct(main.hitAt20)} for ${main.version} (${signedPct(rel)} relative, at least ${signedPct(s.minRelativeDifference)} needed) over ${users} users`;
  } else {
    passed = false;
    reason = `hit@20 ${pct(candidate.hitAt20)} for ${candidate.version} vs ${pct(main.hitAt20)} for ${main.version} (${signedPct(rel)} relative, at least ${signedPct(s.minRelativeDifference)} needed) over ${users} users`;
  }
  const relOf = (a: number | null, b: number | null) => (a !== null && b !== null && b > 0 ? signedPct((a - b) / b) : '–');
  const rows: string[][] = [
    ['spec', candidate.path, main.path, ''],
    ['users', String(candidate.users), String(main.users), ''],
    ['  cold start (no history)', String(candidate.coldStartUsers), String(main.coldStartUsers), ''],
    ['hit@20', pct(candidate.hitAt20, 2), pct(main.hitAt20, 2), relOf(candidate.hitAt20, main.hitAt20)],
    ['NDCG@20', num(candidate.ndcgAt20, 4), num(main.ndcgAt20, 4), relOf(candidate.ndcgAt20, main.ndcgAt20)],
    ['recall@20', num(candidate.recallAt20, 4), num(main.recallAt20, 4), relOf(candidate.recallAt20, main.recallAt20)],
    ['catalog coverage', pct(candidate.coverage, 2), pct(main.coverage, 2), relOf(candidate.coverage, main.coverage)],
    ['popularity bias', num(candidate.popularityBias, 3), num(main.popularityBias, 3), relOf(candidate.popularityBias, main.popularityBias)],
    ['time (ms)', String(candidate.ms), String(main.ms), ''],
  ];
  const table = `cutoff ${split.cutoff.toISOString()} (${split.cutoffRule}); ${split.activeUsers} users active after it, ${users} evaluated; catalog ${split.catalogSize} movies\n` +
    textTable(['metric', `candidate ${candidate.version}`, `main ${main.version}`, 'relative'], rows) +
    `\ngate: ${passed ? 'PASSED' : 'FAILED'}: ${reason}`;
  const numbers: Record<string, number | string | null> = {
    cutoff: split.cutoff.toISOString(),
    cutoff_rule: split.cutoffRule,
    active_users: split.activeUsers,
    users,
    catalog_size: split.catalogSize,
    min_users: s.minUsers,
    min_relative_difference: s.minRelativeDifference,
    relative_difference: rel === null ? null : Number.isFinite(rel) ? rel : 'Infinity',
  };
  for (const [name, sc] of [['candidate', candidate], ['main', main]] as const) {
    numbers[`${name}_version`] = sc.version;
    numbers[`${name}_spec`] = sc.path;
    numbers[`${name}_spec_hash`] = sc.specHash;
    numbers[`${name}_hit_at_20`] = sc.hitAt20;
    numbers[`${name}_ndcg_at_20`] = sc.ndcgAt20;
    numbers[`${name}_recall_at_20`] = sc.recallAt20;
    numbers[`${name}_coverage`] = sc.coverage;
    numbers[`${name}_popularity_bias`] = sc.popularityBias;
    numbers[`${name}_cold_start_users`] = sc.coldStartUsers;
  }
  return { passed, reason, relativeDifference: rel, table, numbers };
}

const signedPct = (x: number | null): string => (x === null ? '–' : !Number.isFinite(x) ? '+∞' : `${x >= 0 ? '+' : ''}${(100 * x).toFixed(1)}%`);

export interface OfflineRun extends OfflineComparison {
  split: Split;
  candidate: OfflineScores;
  main: OfflineScores;
}

/** Candidate against main on one split. */
export async function runOffline(db: Queryable, candidate: LoadedSpec, main: LoadedSpec, s: EvalSettings['offline'], opts: EvaluateOptions & { cutoff?: Date }): Promise<OfflineRun> {
  const split = await makeSplit(db, s, opts.cutoff);
  const { lists: _c, ...c } = await evaluateSpec(db, split, candidate, opts);
  const { lists: _m, ...m } = await evaluateSpec(db, split, main, opts);
  return { ...compareOffline(split, c, m, s), split, candidate: c, main: m };
}
