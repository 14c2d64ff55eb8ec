/**
 * Simulated A/B comparisons on the metric layer, for measuring the judge's error rates: users
 * with known per-user hit probabilities per slot, their exposures and the watches those earn,
 * run through the same computeOutcomes → slotMetrics → judge path as real data.
 */
import { hash32, Rng } from '../random.ts';
import type { Slot } from '../routing.ts';
import { judge, type Judgement } from './judge.ts';
import { computeOutcomes, slotMetrics, type Exposure, type WatchStart } from './online.ts';
import type { EvalSettings } from './settings.ts';

export interface ComparisonSpec {
  seed: number;
  /** Users in each slot (the judge's minimum per slot is the natural choice). */
  usersPerSlot: { main: number; nightly: number };
  /** The probability that a user of the slot is a hit (per the settings' userOutcome). */
  hitRate: { main: number; nightly: number };
  /** Exposures per user are drawn from 1..maxExposures. */
  maxExposures?: number;
  /** The percent the judge is told was configured (default: the simulated split). */
  configuredPercent?: number;
  settings: EvalSettings;
}

const CATALOG = 2000;
const LIST = 20;
const MOVIE_IDS = Array.from({ length: CATALOG }, (_, i) => `m${i}`);

export function simulateComparison(spec: ComparisonSpec): Judgement {
  const rng = new Rng(hash32(spec.seed, 0x5eed));
  const W = spec.settings.attributionWindowMs;
  const t0 = Date.UTC(2025, 0, 6);
  const span = 6 * 3_600_000;
  const asOf = t0 + span + W;
  const maxE = spec.maxExposures ?? 3;
  const exposures: Exposure[] = [];
  const watches: WatchStart[] = [];
  let userId = 0;
  let id = 0;
  for (const slot of ['main', 'nightly'] as Slot[]) {
    const p = spec.hitRate[slot];
    for (let i = 0; i < spec.usersPerSlot[slot]; i++, userId++) {
      const k = rng.int(1, maxE);
      // Per-exposure probability giving exactly p per user: any-hit over k, or the first one.
      const q = spec.settings.userOutcome === 'first' ? p : 1 - Math.pow(1 - p, 1 / k);
      const base = rng.int(0, CATALOG - 1);
      const times = Array.from({ length: k }, () => t0 + Math.floor(rng.next() * span)).sort((a, b) => a - b);
      times.forEach((servedAt, j) => {
        const movieIds = Array.from({ length: LIST }, (_, r) => MOVIE_IDS[(base + j * LIST + r) % CATALOG]);
        exposures.push({ id: id++, servedAt, userId, servedBy: slot, assigned: slot, movieIds, latencyMs: 20 + rng.int(0, 80), fallback: null });
        if (rng.chance(q)) watches.push({ userId, movieId: movieIds[rng.int(0, LIST - 1)], firstAt: servedAt + Math.floor(rng.next() * W) });
      });
    }
  }
  const out = computeOutcomes(exposures, watches, W, asOf);
  const total = spec.usersPerSlot.main + spec.usersPerSlot.nightly;
  return judge({
    releaseId: `sim-${spec.seed}`,
    main: slotMetrics('main', out.users, out.slots.main, CATALOG, spec.settings.userOutcome),
    nightly: slotMetrics('nightly', out.users, out.slots.nightly, CATALOG, spec.settings.userOutcome),
    nightlyPercent: spec.configuredPercent ?? (100 * spec.usersPerSlot.nightly) / total,
    settings: spec.settings,
  });
}

export interface ErrorRateRow {
  baseRate: number;
  scenario: 'worse by the margin' | 'better by twice the margin';
  nightlyRate: number;
  runs: number;
  successful: number;
  failed: number;
  inconclusive: number;
  /** Share of runs promoted (Successful). */
  promoted: number;
  /** Share promoted by the seed's rule: nightly's observed hit rate at least main's, no test. */
  naivePromoted: number;
}

/**
 * The error-rate study: for each base rate, `runs` comparisons with nightly worse by the margin
 * (a promotion is wrong) and `runs` with nightly better by twice the margin (a promotion is right),
 * each slot at the judge's minimum sample size.
 */
export function errorRateStudy(settings: EvalSettings, opts: { runs: number; baseRates: number[]; seed?: number; usersPerSlot?: number }): ErrorRateRow[] {
  const m = settings.judge.nonInferiorityMargin;
  const n = opts.usersPerSlot ?? settings.judge.minUsersPerSlot;
  const rows: ErrorRateRow[] = [];
  opts.baseRates.forEach((base, b) => {
    for (const [scenario, nightlyRate] of [['worse by the margin', base - m], ['better by twice the margin', base + 2 * m]] as const) {
      const row: ErrorRateRow = { baseRate: base, scenario, nightlyRate, runs: opts.runs, successful: 0, failed: 0, inconclusive: 0, promoted: 0, naivePromoted: 0 };
      let naive = 0;
      for (let r = 0; r < opts.runs; r++) {
        const j = simulateComparison({
          seed: hash32(opts.seed ?? 1, b, scenario.length, r), usersPerSlot: { main: n, nightly: n },
          hitRate: { main: base, nightly: nightlyRate }, settings,
        });
        if (j.verdict === 'Successful') row.successful++;
        else if (j.verdict === 'Failed') row.failed++;
        else row.inconclusive++;
        if (Number(j.numbers.nightly_user_hit_rate) >= Number(j.numbers.main_user_hit_rate)) naive++;
      }
      row.promoted = row.successful / row.runs;
      row.naivePromoted = naive / row.runs;
      rows.push(row);
    }
  });
  return rows;
}
