/**
 * The online metric. An exposure is one served recommendation list; it is a hit when the same
 * user starts watching one of its movies within the attribution window W after it was served
 * (watches.first_at in [served_at, served_at + W)). Only exposures older than W count: the
 * outcome of a younger one is not known yet. A movie the user had started before the exposure
 * cannot be a hit (its first_at is earlier), so re-recommending watched movies earns nothing.
 *
 * Exposures belong to the slot the user was ASSIGNED to (intent to treat): when nightly fails and
 * main answers, the exposure still counts for nightly, and as a fallback against it. The
 * assignment comes from user_assignments, or, for a row the gateway did not manage to record, from
 * the served row itself (the first fallback reason names the assigned slot).
 *
 * The same computation exists twice: in SQL for the database (a release can have millions of
 * exposures, so per-user aggregates are made where the data is) and in TypeScript for tests and
 * simulations; a test checks that both agree on the same data.
 */
import type { Pool } from '../db.ts';
import { SLOTS, type Slot } from '../routing.ts';
import { percentile, wilson, type Interval } from './stats.ts';

export interface Exposure {
  id?: number;
  servedAt: number;
  userId: number;
  /** Who answered: main, nightly or popular. */
  servedBy: string;
  /** The slot the user is assigned to; derived from the row when absent. */
  assigned?: Slot | null;
  movieIds: readonly string[];
  latencyMs: number;
  /** The gateway's fallback reasons, e.g. "nightly_timeout" or "nightly_down,main_error". */
  fallback: string | null;
}

export interface WatchStart { userId: number; movieId: string; firstAt: number }

/** Per user and assigned slot, over the counted exposures. */
export interface UserOutcome {
  userId: number;
  slot: Slot;
  exposures: number;
  hits: number;
  /** Whether the user's first counted exposure was a hit. */
  firstHit: boolean;
  /** Sum over exposures of 1/rank of the best-ranked hit (0 for a miss). */
  rrSum: number;
  errors: number;
  fallbacks: number;
}

/** Slot-level figures that do not split by user. */
export interface SlotAggregate {
  exposures: number;
  errors: number;
  fallbacks: number;
  latencyP50: number | null;
  latencyP99: number | null;
  distinctMovies: number;
}

export interface SlotMetrics {
  slot: Slot;
  exposures: number;
  hits: number;
  hitRate: number | null;
  hitRateCi: Interval | null;
  /** Mean reciprocal rank of the hit over exposures (a miss counts 0). */
  mrr: number | null;
  users: number;
  /** Users counted as a hit (see userOutcome) and their share. */
  userHits: number;
  userHitRate: number | null;
  userHitRateCi: Interval | null;
  errors: number;
  errorRate: number | null;
  fallbacks: number;
  fallbackRate: number | null;
  latencyP50: number | null;
  latencyP99: number | null;
  distinctMovies: number;
  catalogSize: number;
  coverage: number | null;
}

const ERROR_KINDS = ['error', 'status', 'bad_answer', 'down'];

/** The assigned slot of a served row without an assignment record. */
export function assignedSlot(e: Pick<Exposure, 'assigned' | 'servedBy' | 'fallback'>): Slot {
  if (e.assigned === 'main' || e.assigned === 'nightly') return e.assigned;
  const first = e.fallback?.split(',')[0] ?? '';
  if (first.startsWith('nightly_')) return 'nightly';
  if (first.startsWith('main_')) return 'main';
  return e.servedBy === 'nightly' ? 'nightly' : 'main';
}

/** Whether the assigned slot failed outright (not a timeout: those are fallbacks only). */
export function isError(fallback: string | null, slot: Slot): boolean {
  return (fallback ?? '').split(',').some((r) => ERROR_KINDS.some((k) => r === `${slot}_${k}`));
}

/** The rank (1-based) of the best-placed recommended movie the user started within W, or null. */
export function hitRank(e: Exposure, watches: ReadonlyMap<string, number> | undefined, windowMs: number): number | null {
  if (!watches) return null;
  for (let i = 0; i < e.movieIds.length; i++) {
    const at = watches.get(e.movieIds[i]);
    if (at !== undefined && at >= e.servedAt && at < e.servedAt + windowMs) return i + 1;
  }
  return null;
}

export interface ComputedOutcomes {
  users: UserOutcome[];
  slots: Record<Slot, SlotAggregate>;
}

/**
 * The TypeScript path: per-user outcomes and slot aggregates of the exposures served in
 * [from, asOf − W] (the same rules as the SQL in loadOutcomes).
 */
export function computeOutcomes(exposures: readonly Exposure[], watches: readonly WatchStart[], windowMs: number, asOf: number, from = -Infinity): ComputedOutcomes {
  const byUser = new Map<number, Map<string, number>>();
  for (const w of watches) {
    let m = byUser.get(w.userId);
    if (!m) byUser.set(w.userId, (m = new Map()));
    m.set(w.movieId, w.firstAt);
  }
  const counted = exposures.filter((e) => e.servedAt >= from && e.servedAt + windowMs <= asOf)
    .sort((a, b) => a.servedAt - b.servedAt || (a.id ?? 0) - (b.id ?? 0));
  const users = new Map<number, UserOutcome>();
  const lat: Record<Slot, number[]> = { main: [], nightly: [] };
  const movies: Record<Slot, Set<string>> = { main: new Set(), nightly: new Set() };
  const agg: Record<Slot, SlotAggregate> = {
    main: { exposures: 0, errors: 0, fallbacks: 0, latencyP50: null, latencyP99: null, distinctMovies: 0 },
    nightly: { exposures: 0, errors: 0, fallbacks: 0, latencyP50: null, latencyP99: null, distinctMovies: 0 },
  };
  for (const e of counted) {
    const slot = assignedSlot(e);
    const key = 2 * e.userId + (slot === 'nightly' ? 1 : 0);
    let u = users.get(key);
    const rank = hitRank(e, byUser.get(e.userId), windowMs);
    if (!u) users.set(key, (u = { userId: e.userId, slot, exposures: 0, hits: 0, firstHit: rank !== null, rrSum: 0, errors: 0, fallbacks: 0 }));
    const error = isError(e.fallback, slot);
    const fallback = e.servedBy !== slot;
    u.exposures++;
    if (rank !== null) { u.hits++; u.rrSum += 1 / rank; }
    if (error) u.errors++;
    if (fallback) u.fallbacks++;
    const a = agg[slot];
    a.exposures++;
    if (error) a.errors++;
    if (fallback) a.fallbacks++;
    lat[slot].push(e.latencyMs);
    for (const id of e.movieIds) movies[slot].add(id);
  }
  for (const s of SLOTS) {
    agg[s].latencyP50 = percentile(lat[s], 50);
    agg[s].latencyP99 = percentile(lat[s], 99);
    agg[s].distinctMovies = movies[s].size;
  }
  return { users: [...users.values()], slots: agg };
}

/** Per-slot metrics from per-user outcomes and slot aggregates. */
export function slotMetrics(slot: Slot, users: readonly UserOutcome[], agg: SlotAggregate, catalogSize: number, userOutcome: 'any' | 'first', level = 0.95): SlotMetrics {
  const mine = users.filter((u) => u.slot === slot);
  let exposures = 0, hits = 0, rr = 0, userHits = 0;
  for (const u of mine) {
    exposures += u.exposures;
    hits += u.hits;
    rr += u.rrSum;
    if (userOutcome === 'first' ? u.firstHit : u.hits > 0) userHits++;
  }
  const rate = (x: number, n: number) => (n > 0 ? x / n : null);
  return {
    slot,
    exposures,
    hits,
    hitRate: rate(hits, exposures),
    hitRateCi: wilson(hits, exposures, level),
    mrr: rate(rr, exposures),
    users: mine.length,
    userHits,
    userHitRate: rate(userHits, mine.length),
    userHitRateCi: wilson(userHits, mine.length, level),
    errors: agg.errors,
    errorRate: rate(agg.errors, agg.exposures),
    fallbacks: agg.fallbacks,
    fallbackRate: rate(agg.fallbacks, agg.exposures),
    latencyP50: agg.latencyP50,
    latencyP99: agg.latencyP99,
    distinctMovies: agg.distinctMovies,
    catalogSize,
    coverage: catalogSize > 0 ? Math.min(1, agg.distinctMovies / catalogSize) : null,
  };
}

// ---- SQL ---------------------------------------------------------------------------------------

/** The release's exposures served in [$2, $3), each with its assigned slot. */
const EXPOSURES = `
  SELECT s.id, s.served_at, s.user_id, s.slot AS served_by, s.fallback, s.latency_ms, s.movie_ids,
         coalesce(a.slot, CASE WHEN s.fallback ~ '^nightly_' THEN 'nightly' WHEN s.fallback ~ '^main_' THEN 'main'
                               WHEN s.slot = 'nightly' THEN 'nightly' ELSE 'main' END) AS assigned
  FROM served_recommendations s
  LEFT JOIN user_assignments a ON a.release_id = s.release_id AND a.user_id = s.user_id
  WHERE s.release_id = $1 AND s.served_at >= $2 AND s.served_at < $3`;

const ERROR_MATCH = `(',' || coalesce(e.fallback, '') || ',') ~ (',' || e.assigned || '_(${ERROR_KINDS.join('|')}),')`;

// Hits by a join rather than one lookup per exposure: only watches started within the judged
// period (plus W) can be hits, and they are few per user and exposure. One join, grouped per
// exposure: joined back to the exposures instead, a table without statistics (fresh, or just
// restored) made the planner re-aggregate the hits once per exposure, quadratic in the release.
const USER_OUTCOMES = `
WITH e AS (${EXPOSURES}),
wr AS (SELECT user_id, movie_id, first_at FROM watches
       WHERE first_at >= $2 AND first_at < $3::timestamptz + $4 * interval '1 millisecond'),
h AS (
  SELECT e.id, e.assigned, e.user_id, e.served_at, e.served_by, e.fallback,
         min(array_position(e.movie_ids, wr.movie_id)) FILTER (WHERE wr.movie_id IS NOT NULL) AS hit_rank
  FROM e LEFT JOIN wr ON wr.user_id = e.user_id AND wr.first_at >= e.served_at AND wr.first_at < e.served_at + $4 * interval '1 millisecond'
                     AND wr.movie_id = ANY (e.movie_ids)
  GROUP BY e.id, e.assigned, e.user_id, e.served_at, e.served_by, e.fallback
)
SELECT h.assigned AS slot, h.user_id, count(*)::int AS exposures, count(h.hit_rank)::int AS hits,
       coalesce(sum(1.0 / h.hit_rank), 0)::float8 AS rr_sum,
       (array_agg(h.hit_rank IS NOT NULL ORDER BY h.served_at, h.id))[1] AS first_hit,
       count(*) FILTER (WHERE ${ERROR_MATCH.replaceAll('e.', 'h.')})::int AS errors,
       count(*) FILTER (WHERE h.served_by <> h.assigned)::int AS fallbacks
FROM h GROUP BY h.assigned, h.user_id`;

// Two queries on the exposures rather than one CTE: each can then run in parallel workers.
const SLOT_COUNTS = `
SELECT e.assigned AS slot, count(*)::int AS exposures,
       count(*) FILTER (WHERE ${ERROR_MATCH})::int AS errors,
       count(*) FILTER (WHERE e.served_by <> e.assigned)::int AS fallbacks,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY e.latency_ms) AS p50,
       percentile_disc(0.99) WITHIN GROUP (ORDER BY e.latency_ms) AS p99
FROM (${EXPOSURES}) e GROUP BY e.assigned`;

const SLOT_MOVIES = `
SELECT assigned AS slot, count(*)::int AS n FROM (SELECT DISTINCT e.assigned, m FROM (${EXPOSURES}) e, unnest(e.movie_ids) m) d GROUP BY assigned`;

type Queryable = Pick<Pool, 'query'>;

export async function loadUserOutcomes(db: Queryable, releaseId: string, from: Date | string, to: Date | string, windowMs: number): Promise<UserOutcome[]> {
  const { rows } = await db.query<{ slot: Slot; user_id: number; exposures: number; hits: number; rr_sum: number; first_hit: boolean; errors: number; fallbacks: number }>(
    USER_OUTCOMES, [releaseId, from, to, windowMs]);
  return rows.map((r) => ({ userId: r.user_id, slot: r.slot, exposures: r.exposures, hits: r.hits, firstHit: r.first_hit, rrSum: r.rr_sum, errors: r.errors, fallbacks: r.fallbacks }));
}

export async function loadSlotAggregates(db: Queryable, releaseId: string, from: Date | string, to: Date | string): Promise<Record<Slot, SlotAggregate>> {
  const [{ rows }, movies] = await Promise.all([
    db.query<{ slot: Slot; exposures: number; errors: number; fallbacks: number; p50: number | null; p99: number | null }>(SLOT_COUNTS, [releaseId, from, to]),
    db.query<{ slot: Slot; n: number }>(SLOT_MOVIES, [releaseId, from, to]),
  ]);
  const empty = (): SlotAggregate => ({ exposures: 0, errors: 0, fallbacks: 0, latencyP50: null, latencyP99: null, distinctMovies: 0 });
  const out: Record<Slot, SlotAggregate> = { main: empty(), nightly: empty() };
  for (const r of rows) {
    out[r.slot] = { exposures: r.exposures, errors: r.errors, fallbacks: r.fallbacks, latencyP50: r.p50, latencyP99: r.p99, distinctMovies: movies.rows.find((m) => m.slot === r.slot)?.n ?? 0 };
  }
  return out;
}

export interface OnlineMetrics {
  releaseId: string;
  /** Exposures served in [from, to) count; to = asOf − W. */
  from: string | null;
  to: string;
  asOf: string;
  attributionWindowMs: number;
  userOutcome: 'any' | 'first';
  users: UserOutcome[];
  slots: Record<Slot, SlotMetrics>;
}

/** The online metric of a release per slot, as of `asOf` (default now). */
export async function onlineMetrics(db: Queryable, releaseId: string, opts: { windowMs: number; userOutcome: 'any' | 'first'; asOf?: Date; level?: number }): Promise<OnlineMetrics> {
  const asOf = opts.asOf ?? new Date();
  const to = new Date(asOf.getTime() - opts.windowMs);
  // From the release's first exposure: bounds the watches that can be hits.
  const first = await db.query<{ at: Date | null }>('SELECT min(served_at) AS at FROM served_recommendations WHERE release_id = $1', [releaseId]);
  const from = first.rows[0].at ?? to;
  const [users, aggs, catalog] = await Promise.all([
    loadUserOutcomes(db, releaseId, from, to, opts.windowMs),
    loadSlotAggregates(db, releaseId, from, to),
    db.query<{ n: number }>('SELECT count(*)::int AS n FROM movies'),
  ]);
  const catalogSize = catalog.rows[0].n;
  return {
    releaseId,
    from: first.rows[0].at?.toISOString() ?? null,
    to: to.toISOString(),
    asOf: asOf.toISOString(),
    attributionWindowMs: opts.windowMs,
    userOutcome: opts.userOutcome,
    users,
    slots: {
      main: slotMetrics('main', users, aggs.main, catalogSize, opts.userOutcome, opts.level),
      nightly: slotMetrics('nightly', users, aggs.nightly, catalogSize, opts.userOutcome, opts.level),
    },
  };
}
