/**
 * Release-time fairness: nightly's exposure Gini, catalogue coverage and ARP beside main's, for
 * `marquee eval online`, the judge's numbers (and so the release mail), and optional guardrails
 * (evaluation.guardrails.maxExposureGini / minExposureCoverage / maxArpRatio in temporal.yaml,
 * all off by default). Slot = who served the list, so nightly's figures are its model's own.
 */
import type { Pool } from '../db.ts';
import { SLOTS, type Slot } from '../routing.ts';
import { catalogCoverage, giniIndex } from './metrics.ts';

type Queryable = Pick<Pool, 'query'>;

export interface ExposureFigures { lists: number; distinctMovies: number; gini: number | null; coverage: number | null; arp: number | null }

export interface FairnessLimits { maxExposureGini: number | null; minExposureCoverage: number | null; maxArpRatio: number | null }

/**
 * Per slot, over the release's lists served in [from, to): the exposure count of every movie (for
 * the Gini and coverage of lib/report/metrics.ts) and ARP. ARP is averaged where the rows are: the
 * mean over lists of the list's mean popularity, popularity = distinct watchers (the definition of
 * averageRecommendationPopularity).
 *
 * ARP is summed per movie (Σ_l 1/|l| Σ_{m∈l} pop(m) = Σ_m pop(m) · Σ_{l∋m} 1/|l|), each listed
 * movie's popularity counted through watches' movie index, so no join is left for the planner to
 * get wrong. Joined per list instead, stale statistics (a release's rows are newer than the last
 * ANALYZE; a restored database has none) made it expect one list and re-aggregate the watches once
 * per list: minutes for a few thousand lists, and a judge that timed out in CI.
 */
export async function releaseExposure(db: Queryable, releaseId: string, from: Date | string, to: Date | string): Promise<Record<Slot, ExposureFigures>> {
  const [counts, arp, catalog] = await Promise.all([
    db.query<{ slot: Slot; n: number }>(
      `SELECT s.slot, count(*)::int AS n FROM served_recommendations s, unnest(s.movie_ids) m
       WHERE s.release_id = $1 AND s.served_at >= $2 AND s.served_at < $3 AND s.slot IN ('main', 'nightly') GROUP BY s.slot, m`, [releaseId, from, to]),
    db.query<{ slot: Slot; lists: number; arp: number | null }>(
      `WITH l AS MATERIALIZED (SELECT slot, movie_ids FROM served_recommendations
                  WHERE release_id = $1 AND served_at >= $2 AND served_at < $3 AND slot IN ('main', 'nightly') AND cardinality(movie_ids) > 0),
            w AS MATERIALIZED (SELECT l.slot, m AS movie_id, sum(1.0 / cardinality(l.movie_ids)) AS w FROM l, unnest(l.movie_ids) m GROUP BY l.slot, m),
            lists AS (SELECT slot, count(*) AS n FROM l GROUP BY slot),
            total AS (SELECT w.slot, sum(w.w * (SELECT count(*) FROM watches x WHERE x.movie_id = w.movie_id)) AS s FROM w GROUP BY w.slot)
       SELECT lists.slot, lists.n::int AS lists, (total.s / lists.n)::float8 AS arp FROM lists JOIN total ON total.slot = lists.slot`, [releaseId, from, to]),
    db.query<{ n: number }>('SELECT count(*)::int AS n FROM movies'),
  ]);
  const out = {} as Record<Slot, ExposureFigures>;
  for (const slot of SLOTS) {
    const c = counts.rows.filter((r) => r.slot === slot).map((r) => r.n);
    const a = arp.rows.find((r) => r.slot === slot);
    const n = Math.max(catalog.rows[0].n, c.length);
    out[slot] = { lists: a?.lists ?? 0, distinctMovies: c.length, gini: giniIndex(c, n), coverage: catalogCoverage(c.length, n), arp: a?.arp ?? null };
  }
  return out;
}

/** The figures as judge numbers: main_exposure_gini, nightly_exposure_gini, …_exposure_coverage, …_arp. */
export function fairnessNumbers(f: Record<Slot, ExposureFigures>): Record<string, number | null> {
  const out: Record<string, number | null> = {};
  for (const s of SLOTS) {
    out[`${s}_exposure_gini`] = f[s].gini;
    out[`${s}_exposure_coverage`] = f[s].coverage;
    out[`${s}_arp`] = f[s].arp;
  }
  return out;
}

/** Nightly against the limits that are set (none by default). */
export function fairnessViolations(f: Record<Slot, ExposureFigures>, l: FairnessLimits): string[] {
  const n = f.nightly, m = f.main;
  const out: string[] = [];
  if (l.maxExposureGini !== null && n.gini !== null && n.gini > l.maxExposureGini) out.push(`exposure Gini ${n.gini.toFixed(3)} above the limit of ${l.maxExposureGini}`);
  if (l.minExposureCoverage !== null && n.coverage !== null && n.coverage < l.minExposureCoverage) {
    out.push(`catalogue coverage ${(n.coverage * 100).toFixed(1)} % below the limit of ${(l.minExposureCoverage * 100).toFixed(1)} %`);
  }
  if (l.maxArpRatio !== null && n.arp !== null && m.arp !== null && m.arp > 0 && n.arp / m.arp > l.maxArpRatio) {
    out.push(`ARP ${n.arp.toFixed(1)} is ${(n.arp / m.arp).toFixed(2)}× main's ${m.arp.toFixed(1)}, above the limit of ${l.maxArpRatio}×`);
  }
  return out;
}

/** A small table for the CLI and the release mail, from judge numbers (nothing when they lack the figures). */
export function formatFairness(numbers: Record<string, number | string | null> | undefined): string[] {
  if (!numbers || !('nightly_exposure_gini' in numbers)) return [];
  const v = (k: string, f: (x: number) => string) => { const x = numbers[k]; return typeof x === 'number' ? f(x) : '–'; };
  const row = (name: string, key: string, f: (x: number) => string) => `${name.padEnd(22)}${v(`main_${key}`, f).padStart(10)}${v(`nightly_${key}`, f).padStart(10)}`;
  return [
    'Exposure (lists each slot served):',
    `${''.padEnd(22)}${'main'.padStart(10)}${'nightly'.padStart(10)}`,
    row('exposure Gini', 'exposure_gini', (x) => x.toFixed(3)),
    row('catalogue coverage', 'exposure_coverage', (x) => `${(x * 100).toFixed(1)} %`),
    row('ARP (mean watchers)', 'arp', (x) => x.toFixed(1)),
  ];
}
