/**
 * Model specs: a JSON file under models/ naming the ranking rule, its parameters, the vector
 * collection it reads and a version label. Every parameter is written out in the file (no
 * defaults filled in by code), so the file alone says what the model does and its hash is a
 * faithful fingerprint for provenance.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { projectRoot } from '../config.ts';

const count = (max: number) => z.number().int().min(1).max(max);
const weight = z.number().min(0).max(100);

/** Cold start: the fixed list of the most popular movies, or the movies most watched lately. */
const coldStartSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('popular'), size: count(100) }),
  z.strictObject({
    kind: z.literal('recent'),
    size: count(100),
    /** Watches that started within this many hours before now (or asOf) count. */
    windowHours: z.number().positive().max(24 * 365),
  }),
]);

/** The seed's rule: neighbours of watched movies sorted by popularity mixed with the user's rating of the source. */
const seedParams = z.strictObject({
  neighboursPerMovie: count(500),
  /** Only the most recently watched movies act as sources. */
  maxSources: count(1000),
  popularityWeight: weight,
  ratingWeight: weight,
  /** The rating assumed for a watched movie the user did not rate (the seed used 3). */
  unratedRating: z.number().min(1).max(5),
  excludeWatched: z.boolean(),
  coldStart: coldStartSchema,
});

/** Similarity weighted by how much the user liked each source movie, popularity de-biased. */
const affinityParams = z.strictObject({
  neighboursPerMovie: count(500),
  maxSources: count(1000),
  /** Neighbours below this cosine similarity are ignored. */
  minSimilarity: z.number().min(-1).max(1),
  /** Similarity is raised to this power before weighting: above 1 favours close neighbours. */
  similarityExponent: z.number().positive().max(10),
  /** A rating equal to this is neutral; each step above or below counts 1/2 (5 → +1, 1 → -1 with 3). */
  neutralRating: z.number().min(1).max(5),
  /** Unrated watches: the share of the runtime seen, mapped so neutralShare → 0 and all of it → implicitWeight. */
  neutralShare: z.number().min(0).max(0.99),
  implicitWeight: weight,
  /** Runtime assumed when the catalog has none for a movie (minutes). */
  defaultRuntimeMinutes: z.number().positive().max(1000),
  /** A source's weight halves every this many days before the time of the request; null: no decay. */
  recencyHalfLifeDays: z.number().positive().nullable(),
  /** Scores are divided by (1 + ln(1 + popularity)) ** popularityPenalty; 0 leaves them alone. */
  popularityPenalty: z.number().min(0).max(5),
  excludeWatched: z.boolean(),
  coldStart: coldStartSchema,
});

/**
 * A taste profile: the user's liked movies (weighted as in affinity) summed into one vector, and
 * every movie in the collection scored by its cosine with it, plus how well rated and how popular
 * it is. Unlike the neighbour rules it looks past each source's nearest few, so a well-rated movie
 * that fits the user's overall taste can rank even when it is no single source's close neighbour.
 */
const tasteParams = z.strictObject({
  maxSources: count(1000),
  neutralRating: z.number().min(1).max(5),
  neutralShare: z.number().min(0).max(0.99),
  implicitWeight: weight,
  defaultRuntimeMinutes: z.number().positive().max(1000),
  recencyHalfLifeDays: z.number().positive().nullable(),
  /** Added per point of vote average above qualityPrior (the collection's vote_average metadata). */
  qualityWeight: weight,
  /** The vote average of a movie nobody voted on, and what few votes are pulled towards. */
  qualityPrior: z.number().min(0).max(10),
  /** Votes' worth of qualityPrior mixed into each average (0 takes averages as they are). */
  qualityShrinkVotes: z.number().min(0).max(1_000_000),
  /** Added per unit of ln(1 + popularity). */
  popularityWeight: weight,
  excludeWatched: z.boolean(),
  coldStart: coldStartSchema,
});

/**
 * Co-watch: movies scored by how often their audience also watched the user's movies (item-item
 * similarity over the watch history before the time of the request, see cowatch.ts), blended with
 * how many users started each movie lately, which on real data is a strong prior of its own.
 */
const cowatchParams = z.strictObject({
  /** Co-watch neighbours kept per movie and read per source. */
  neighboursPerMovie: count(1000),
  /** Only the most recently watched movies act as sources. */
  maxSources: count(1000),
  /** Candidate-side exponent of c_ij / (n_i^(1−α) · n_j^α): 0.5 is cosine, more holds blockbusters back. */
  alpha: z.number().min(0).max(1),
  /** Pairs watched together by fewer users are ignored. */
  minCoWatchers: count(1000),
  /** A source's weight halves every this many days before the request; null: no decay. */
  recencyHalfLifeDays: z.number().positive().nullable(),
  /** A rated source weighs 1 + ratingWeight × (rating − neutralRating) / 2 (never below 0); unrated ones 1. */
  ratingWeight: z.number().min(0).max(10),
  neutralRating: z.number().min(1).max(5),
  /**
   * Weight of the recent-popularity prior beside the co-watch score (scaled so that the user's
   * best candidate scores 1). The prior of a movie is its starts in the window divided by its
   * viewers of all time before the request to the power trendExponent (0: plain recent starts;
   * more favours movies on the rise over long-time favourites), over the largest such value, to
   * the power popularityExponent.
   */
  popularityWeight: weight,
  popularityExponent: z.number().positive().max(10),
  trendExponent: z.number().min(0).max(1),
  /** Starts within this many hours before the request count as recent. */
  popularityWindowHours: z.number().positive().max(24 * 365 * 100),
  excludeWatched: z.boolean(),
  coldStart: coldStartSchema,
});

const common = {
  version: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'expected a version label of lower-case letters, digits, ".", "_" or "-" (at most 63)'),
  description: z.string().optional(),
  collection: z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9._-]{1,61}[a-zA-Z0-9]$/, 'expected a ChromaDB collection name such as movies_content_v1'),
};

export const specSchema = z.discriminatedUnion('rule', [
  z.strictObject({ ...common, rule: z.literal('seed-popularity-rating'), params: seedParams }),
  z.strictObject({ ...common, rule: z.literal('affinity'), params: affinityParams }),
  z.strictObject({ ...common, rule: z.literal('taste-profile'), params: tasteParams }),
  z.strictObject({ ...common, rule: z.literal('cowatch'), params: cowatchParams }),
]);

export type ModelSpec = z.infer<typeof specSchema>;
export type SeedSpec = Extract<ModelSpec, { rule: 'seed-popularity-rating' }>;
export type AffinitySpec = Extract<ModelSpec, { rule: 'affinity' }>;
export type TasteSpec = Extract<ModelSpec, { rule: 'taste-profile' }>;
export type CoWatchSpec = Extract<ModelSpec, { rule: 'cowatch' }>;
export type ColdStart = ModelSpec['params']['coldStart'];
export const RULES = ['seed-popularity-rating', 'affinity', 'taste-profile', 'cowatch'] as const;

export class SpecError extends Error {
  constructor(readonly source: string, readonly problems: string[]) {
    super(`invalid model spec ${source}:\n  - ${problems.join('\n  - ')}`);
    this.name = 'SpecError';
  }
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const key = issue.path.join('.') || '(root)';
  if (issue.code === 'unrecognized_keys') return `${key === '(root)' ? '' : key + '.'}${issue.keys.join(', ')}: unknown key`;
  if (issue.code === 'invalid_type' && issue.message.includes('received undefined')) return `${key}: missing`;
  return `${key}: ${issue.message}`;
}

/** Validates a parsed spec, or throws a SpecError naming each bad field. */
export function parseSpec(raw: unknown, source = 'spec'): ModelSpec {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new SpecError(source, ['the spec must be a JSON object']);
  const rule = (raw as Record<string, unknown>).rule;
  // A bad rule makes the union's other errors meaningless, so say just that.
  if (rule === undefined) throw new SpecError(source, [`rule: missing (one of ${RULES.join(', ')})`]);
  if (!RULES.includes(rule as (typeof RULES)[number])) throw new SpecError(source, [`rule: ${JSON.stringify(rule)} is not a known rule (one of ${RULES.join(', ')})`]);
  const result = specSchema.safeParse(raw);
  if (!result.success) throw new SpecError(source, result.error.issues.map(describeIssue));
  return result.data;
}

export interface LoadedSpec {
  spec: ModelSpec;
  /** sha256 of the canonical JSON of the spec (keys sorted, no whitespace). */
  hash: string;
  /** The path as given, relative to the project root when inside it. */
  path: string;
}

/** Reads and validates a spec file; relative paths resolve against the project root. */
export function loadSpec(file: string): LoadedSpec {
  const abs = path.resolve(projectRoot, file);
  let text: string;
  try {
    text = readFileSync(abs, 'utf8');
  } catch (err) {
    throw new SpecError(file, [`cannot read the file: ${(err as Error).message}`]);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new SpecError(file, [`not valid JSON: ${(err as Error).message}`]);
  }
  const spec = parseSpec(raw, file);
  const rel = path.relative(projectRoot, abs);
  return { spec, hash: specHash(spec), path: rel.startsWith('..') ? abs : rel };
}

/** JSON with object keys sorted at every level and no whitespace: the same spec always gives the same text. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new Error('canonicalJson: non-finite number');
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const obj = value as Record<string, unknown>;
  return `{${Object.keys(obj).filter((k) => obj[k] !== undefined).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
}

export function specHash(spec: ModelSpec): string {
  return createHash('sha256').update(canonicalJson(spec)).digest('hex');
}
