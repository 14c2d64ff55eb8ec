/**
 * Offline evaluation: split the stored history at a cutoff; for the users who started movies
 * after it, hide those movies, ask a model spec for its 20 movies as of the cutoff, and score the
 * list against what they went on to watch. The list is made the way the inference service makes
 * it for asOf=cutoff (lib/models: history, popularity, cold-start list and candidate movies as of
 * the cutoff, the spec's vectors, the same rankWithLists()), in process, so an offline score is the
 * score of what the service serves for that time. Warm users (some history before the cutoff) and
 * cold ones (none: they get the cold-start list) are scored apart too, and the gate decides on the
 * warm ones when there are enough of them: that is where the models differ.
 */
import type { Config } from '../config.ts';
import type { Pool } from '../db.ts';
import { chromaClientAt } from '../chroma.ts';
import { fetchAllVectors, openCollection } from '../models/collection.ts';
import { readHistory } from '../models/history.ts';
import { listsAsOf, rankWithLists } from '../models/lists.ts';
import { LIST_SIZE, neighbourCount, selectSources, usesVectors, type HistoryEntry } from '../models/rank.ts';
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
    const client = chromaClientAt(cfg.chroma.url);
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

/** The metrics over one group of users. */
export interface SegmentScores {
  users: number;
  hitAt20: number | null;
  ndcgAt20: number | null;
  recallAt20: number | null;
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
  /** Users with history before the cutoff, and those without (cold start). */
  warm: SegmentScores;
  cold: SegmentScores;
  vectors: number;
  ms: number;
}

interface Sums { users: number; hits: number; ndcg: number; recall: number }
const newSums = (): Sums => ({ users: 0, hits: 0, ndcg: 0, recall: 0 });
const segment = (x: Sums): SegmentScores => {
  const mean = (v: number) => (x.users > 0 ? v / x.users : null);
  return { users: x.users, hitAt20: mean(x.hits), ndcgAt20: mean(x.ndcg), recallAt20: mean(x.recall) };
};

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

/** The spec's answers for the split's users as of the cutoff, scored. */
export async function evaluateSpec(db: Queryable, split: Split, loaded: LoadedSpec, opts: EvaluateOptions): Promise<OfflineScores & { lists: Map<number, string[]> }> {
  const started = performance.now();
  const { spec } = loaded;
  const cutoff = split.cutoff;
  const progress = opts.progress ?? (() => undefined);

  // The lists the inference service ranks with for asOf=cutoff (the same function builds them).
  progress({ phase: `${spec.version}: vectors`, done: 0, total: split.users.length });
  const records = split.users.length > 0 && usesVectors(spec) ? await opts.vectors(spec.collection) : [];
  const index = VectorIndex.from(records);
  const serving = await listsAsOf(db, spec, cutoff);

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
  if (withHistory > 0 && usesVectors(spec) && index.size === 0) throw new MissingVectorsError(spec.collection, 'the collection holds no vectors');

  // Neighbour lists of every source in a few passes over the vectors rather than one scan per source.
  const k = neighbourCount(spec);
  const sources = [...new Set([...histories.values()].flatMap((h) => selectSources(h, spec.params.maxSources).map((e) => e.movieId)))];
  for (let i = 0; i < sources.length; i += 256) {
    index.warm(sources.slice(i, i + 256), k);
    progress({ phase: `${spec.version}: neighbours`, done: Math.min(sources.length, i + 256), total: sources.length });
    await new Promise((r) => setImmediate(r));
  }

  const sums = { all: newSums(), warm: newSums(), cold: newSums() };
  let popSum = 0, popN = 0;
  const recommended = new Set<string>();
  const lists = new Map<number, string[]>();
  for (const u of split.users) {
    const history = histories.get(u.userId)!;
    const ranked = rankWithLists(spec, serving, { history, neighbours: (id, n) => index.neighbours(id, n), space: index, now: cutoff.getTime() });
    const s = scoreList(ranked.ids, u.targets);
    for (const group of [sums.all, history.length > 0 ? sums.warm : sums.cold]) {
      group.users++;
      if (s.hit) group.hits++;
      group.ndcg += s.ndcg;
      group.recall += s.recall;
    }
    for (const id of ranked.ids) {
      recommended.add(id);
      popSum += split.popularityPercentile.get(id) ?? 0;
      popN++;
    }
    lists.set(u.userId, ranked.ids);
  }
  const all = segment(sums.all);
  return {
    version: spec.version,
    path: loaded.path,
    specHash: loaded.hash,
    users: all.users,
    coldStartUsers: sums.cold.users,
    hitAt20: all.hitAt20,
    ndcgAt20: all.ndcgAt20,
    recallAt20: all.recallAt20,
    warm: segment(sums.warm),
    cold: segment(sums.cold),
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
 * main's. It decides on the warm users (history before the cutoff) when there are at least
 * minUsers of them: cold users get each spec's cold-start list, which says little about the model
 * and, when they are many, drowns the difference. With fewer warm users it decides on all users;
 * with fewer than minUsers in all it fails: an empty or tiny history is no evidence.
 */
export function compareOffline(split: Split, candidate: OfflineScores, main: OfflineScores, s: EvalSettings['offline']): OfflineComparison {
  const users = candidate.users;
  const onWarm = candidate.warm.users >= s.minUsers;
  const basis = onWarm ? 'warm users' : 'all users';
  const c = onWarm ? candidate.warm : candidate;
  const m = onWarm ? main.warm : main;
  let rel: number | null = null;
  if (c.hitAt20 !== null && m.hitAt20 !== null) {
    rel = m.hitAt20 > 0 ? (c.hitAt20 - m.hitAt20) / m.hitAt20 : c.hitAt20 > 0 ? Infinity : 0;
  }
  let passed: boolean;
  let reason: string;
  if (users < s.minUsers) {
    passed = false;
    reason = `not enough users: ${users} active after the cutoff ${split.cutoff.toISOString()}, ${s.minUsers} needed`;
  } else {
    passed = rel !== null && rel >= s.minRelativeDifference;
    reason = `hit@20 ${pct(c.hitAt20)} for ${candidate.version} vs ${pct(m.hitAt20)} for ${main.version} (${signedPct(rel)} relative, at least ${signedPct(s.minRelativeDifference)} needed) over ${c.users} ${basis}` +
      (onWarm ? '' : ` (fewer than ${s.minUsers} warm users: ${candidate.warm.users})`);
  }
  const relOf = (a: number | null, b: number | null) => (a !== null && b !== null && b > 0 ? signedPct((a - b) / b) : '–');
  const metricRows = (label: string, x: SegmentScores, y: SegmentScores): string[][] => [
    [`${label}users`, String(x.users), String(y.users), ''],
    [`${label}hit@20`, pct(x.hitAt20, 2), pct(y.hitAt20, 2), relOf(x.hitAt20, y.hitAt20)],
    [`${label}NDCG@20`, num(x.ndcgAt20, 4), num(y.ndcgAt20, 4), relOf(x.ndcgAt20, y.ndcgAt20)],
    [`${label}recall@20`, num(x.recallAt20, 4), num(y.recallAt20, 4), relOf(x.recallAt20, y.recallAt20)],
  ];
  const rows: string[][] = [
    ['spec', candidate.path, main.path, ''],
    ...metricRows('', candidate, main),
    ...metricRows('warm ', candidate.warm, main.warm),
    ...metricRows('cold ', candidate.cold, main.cold),
    ['catalog coverage', pct(candidate.coverage, 2), pct(main.coverage, 2), relOf(candidate.coverage, main.coverage)],
    ['popularity bias', num(candidate.popularityBias, 3), num(main.popularityBias, 3), relOf(candidate.popularityBias, main.popularityBias)],
    ['time (ms)', String(candidate.ms), String(main.ms), ''],
  ];
  const table = `cutoff ${split.cutoff.toISOString()} (${split.cutoffRule}); ${split.activeUsers} users active after it, ${users} evaluated ` +
    `(${candidate.warm.users} warm: history before the cutoff; ${candidate.cold.users} cold); catalog ${split.catalogSize} movies\n` +
    textTable(['metric', `candidate ${candidate.version}`, `main ${main.version}`, 'relative'], rows) +
    `\ngate (on ${basis}, at least ${s.minUsers} needed to decide on warm users): ${passed ? 'PASSED' : 'FAILED'}: ${reason}`;
  const numbers: Record<string, number | string | null> = {
    cutoff: split.cutoff.toISOString(),
    cutoff_rule: split.cutoffRule,
    active_users: split.activeUsers,
    users,
    warm_users: candidate.warm.users,
    cold_users: candidate.cold.users,
    gate_basis: onWarm ? 'warm' : 'all',
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
    for (const seg of ['warm', 'cold'] as const) {
      numbers[`${name}_${seg}_users`] = sc[seg].users;
      numbers[`${name}_${seg}_hit_at_20`] = sc[seg].hitAt20;
      numbers[`${name}_${seg}_ndcg_at_20`] = sc[seg].ndcgAt20;
      numbers[`${name}_${seg}_recall_at_20`] = sc[seg].recallAt20;
    }
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
