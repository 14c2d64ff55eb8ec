import { describe, expect, it } from 'vitest';
import { assignedSlot, computeOutcomes, hitRank, isError, slotMetrics, type Exposure, type WatchStart } from '../lib/eval/online.ts';
import { scoreList } from '../lib/eval/offline.ts';
import { DEFAULT_EVAL_SETTINGS, evalSettings } from '../lib/eval/settings.ts';
import { compareProportions, erfc, normalCdf, normalQuantile, percentile, sampleRatioTest, wilson } from '../lib/eval/stats.ts';

const MIN = 60_000;

describe('statistics against hand-computed values', () => {
  it('normal distribution and its quantile', () => {
    expect(normalCdf(0)).toBeCloseTo(0.5, 7);
    expect(normalCdf(1)).toBeCloseTo(0.8413447, 6);
    expect(normalCdf(-1.959964)).toBeCloseTo(0.025, 6);
    expect(normalQuantile(0.95)).toBeCloseTo(1.6448536, 6);
    expect(normalQuantile(0.975)).toBeCloseTo(1.959964, 6);
    expect(normalQuantile(0.001)).toBeCloseTo(-3.090232, 5);
    expect(erfc(0)).toBeCloseTo(1, 7);
    expect(() => normalQuantile(1.5)).toThrow(/0..1/);
  });

  it('Wilson interval of 10/100 is 5.52%–17.44%, none for no trials', () => {
    const w = wilson(10, 100, 0.95)!;
    expect(w.low).toBeCloseTo(0.0552291, 5);
    expect(w.high).toBeCloseTo(0.1743657, 5);
    expect(wilson(0, 0)).toBeNull();
    const zero = wilson(0, 50)!;
    expect(zero.low).toBe(0);
    expect(zero.high).toBeGreaterThan(0.05);
  });

  it('two proportions: 100/1000 vs 150/1000', () => {
    const t = compareProportions(100, 1000, 150, 1000, 0.975, 0.02)!;
    expect(t.diff).toBeCloseTo(0.05, 10);
    // Agresti–Caffo: (151/1002) − (101/1002), se from the adjusted rates.
    expect(t.adjustedDiff).toBeCloseTo(0.0499002, 6);
    expect(t.se).toBeCloseTo(0.0147713, 6);
    expect(t.low).toBeCloseTo(0.0209491, 5);
    expect(t.high).toBeCloseTo(0.0788513, 5);
    // Pooled z-test.
    expect(t.z).toBeCloseTo(3.380617, 5);
    expect(t.pValue).toBeCloseTo(0.000723, 5);
    expect(t.nonInferiorityP).toBeLessThan(1e-5);
    expect(compareProportions(0, 0, 5, 10, 0.95, 0.02)).toBeNull();
  });

  it('keeps an honest interval when both arms have no hits at all', () => {
    const t = compareProportions(0, 1000, 0, 1000, 0.975, 0.02)!;
    expect(t.diff).toBe(0);
    expect(t.se).toBeGreaterThan(0);
    expect(t.low).toBeLessThan(0);
  });

  it('sample-ratio chi-square: 850/150 against 20% is a mismatch; 800/200 is not', () => {
    const bad = sampleRatioTest(850, 150, 20)!;
    expect(bad.expected).toEqual({ main: 800, nightly: 200 });
    expect(bad.chiSquare).toBeCloseTo(15.625, 10);
    expect(bad.pValue).toBeCloseTo(7.72268e-5, 8);
    const good = sampleRatioTest(800, 200, 20)!;
    expect(good.chiSquare).toBe(0);
    expect(good.pValue).toBeCloseTo(1, 6);
    expect(sampleRatioTest(0, 0, 20)).toBeNull();
    expect(sampleRatioTest(10, 1, 0)!.pValue).toBe(0);
  });

  it('nearest-rank percentiles', () => {
    const v = [5, 1, 4, 2, 3, 10, 9, 8, 7, 6];
    expect(percentile(v, 50)).toBe(5);
    expect(percentile(v, 99)).toBe(10);
    expect(percentile(v, 10)).toBe(1);
    expect(percentile([], 50)).toBeNull();
  });
});

describe('the online metric on a hand-made release', () => {
  const t0 = Date.UTC(2025, 0, 6, 12);
  const W = 30 * MIN;
  const asOf = t0 + 120 * MIN;
  const exposures: Exposure[] = [
    // user 1 (main): a hit at rank 2, then a list whose movies were started before it or too late.
    { id: 1, servedAt: t0, userId: 1, servedBy: 'main', assigned: 'main', movieIds: ['a', 'b', 'c'], latencyMs: 10, fallback: null },
    { id: 2, servedAt: t0 + 40 * MIN, userId: 1, servedBy: 'main', assigned: 'main', movieIds: ['b', 'd'], latencyMs: 30, fallback: null },
    // user 2 (nightly): a hit at rank 1 started at the very time of serving; a later list is too young to count.
    { id: 3, servedAt: t0, userId: 2, servedBy: 'nightly', assigned: 'nightly', movieIds: ['x', 'y'], latencyMs: 20, fallback: null },
    { id: 4, servedAt: t0 + 95 * MIN, userId: 2, servedBy: 'nightly', assigned: 'nightly', movieIds: ['z'], latencyMs: 5, fallback: null },
    // user 3: assigned nightly (no record), nightly timed out, main answered: a fallback, not an error.
    { id: 5, servedAt: t0 + 5 * MIN, userId: 3, servedBy: 'main', assigned: null, movieIds: ['a'], latencyMs: 400, fallback: 'nightly_timeout' },
    // user 4: nightly down and main failing: the popular list; an error and a fallback for nightly.
    { id: 6, servedAt: t0 + 6 * MIN, userId: 4, servedBy: 'popular', movieIds: ['p', 'q'], latencyMs: 600, fallback: 'nightly_down,main_error' },
  ];
  const watches: WatchStart[] = [
    { userId: 1, movieId: 'b', firstAt: t0 + 10 * MIN },
    { userId: 1, movieId: 'd', firstAt: t0 + 70 * MIN }, // exactly W after list 2: not within it
    { userId: 2, movieId: 'x', firstAt: t0 },
    { userId: 2, movieId: 'z', firstAt: t0 + 100 * MIN },
    { userId: 3, movieId: 'zz', firstAt: t0 + 6 * MIN },
  ];

  it('attributes hits within [served, served + W) only', () => {
    const m = new Map([['b', t0 + 10 * MIN], ['d', t0 + 70 * MIN]]);
    expect(hitRank(exposures[0], m, W)).toBe(2);
    expect(hitRank(exposures[1], m, W)).toBeNull();
    expect(hitRank(exposures[1], m, W + 1)).toBe(2); // d at exactly 30 min counts with a longer window
    expect(hitRank(exposures[0], undefined, W)).toBeNull();
  });

  it('derives the assigned slot and the error kind from the fallback reasons', () => {
    expect(assignedSlot(exposures[4])).toBe('nightly');
    expect(assignedSlot(exposures[5])).toBe('nightly');
    expect(assignedSlot({ servedBy: 'main', fallback: 'main_timeout' })).toBe('main');
    expect(assignedSlot({ servedBy: 'popular', fallback: null })).toBe('main');
    expect(assignedSlot({ servedBy: 'main', assigned: 'nightly', fallback: null })).toBe('nightly');
    expect(isError('nightly_timeout', 'nightly')).toBe(false);
    expect(isError('nightly_down,main_error', 'nightly')).toBe(true);
    expect(isError('nightly_down,main_error', 'main')).toBe(true);
    expect(isError('nightly_status', 'main')).toBe(false);
    expect(isError(null, 'main')).toBe(false);
  });

  it('computes every per-slot number', () => {
    const out = computeOutcomes(exposures, watches, W, asOf);
    const main = slotMetrics('main', out.users, out.slots.main, 10, 'any');
    const nightly = slotMetrics('nightly', out.users, out.slots.nightly, 10, 'any');
    expect(main).toMatchObject({
      exposures: 2, hits: 1, hitRate: 0.5, mrr: 0.25, users: 1, userHits: 1, userHitRate: 1,
      errors: 0, errorRate: 0, fallbacks: 0, fallbackRate: 0, latencyP50: 10, latencyP99: 30, distinctMovies: 4, coverage: 0.4,
    });
    expect(nightly).toMatchObject({
      exposures: 3, hits: 1, users: 3, userHits: 1, errors: 1, fallbacks: 2, latencyP50: 400, latencyP99: 600, distinctMovies: 5, coverage: 0.5,
    });
    expect(nightly.hitRate).toBeCloseTo(1 / 3, 12);
    expect(nightly.mrr).toBeCloseTo(1 / 3, 12);
    expect(nightly.errorRate).toBeCloseTo(1 / 3, 12);
    expect(nightly.fallbackRate).toBeCloseTo(2 / 3, 12);
    expect(nightly.hitRateCi!.low).toBeGreaterThan(0);
    // Per user, 'first' only looks at the first counted list: user 1's is a hit, so the same here.
    expect(slotMetrics('main', out.users, out.slots.main, 10, 'first').userHits).toBe(1);
  });

  it('"first" and "any" differ when only a later list is a hit', () => {
    const ex: Exposure[] = [
      { id: 1, servedAt: t0, userId: 9, servedBy: 'main', movieIds: ['a'], latencyMs: 1, fallback: null },
      { id: 2, servedAt: t0 + MIN, userId: 9, servedBy: 'main', movieIds: ['b'], latencyMs: 1, fallback: null },
    ];
    const out = computeOutcomes(ex, [{ userId: 9, movieId: 'b', firstAt: t0 + 2 * MIN }], W, asOf);
    expect(slotMetrics('main', out.users, out.slots.main, 0, 'any').userHits).toBe(1);
    expect(slotMetrics('main', out.users, out.slots.main, 0, 'first').userHits).toBe(0);
    expect(slotMetrics('main', out.users, out.slots.main, 0, 'any').coverage).toBeNull();
  });

  it('no exposures: empty metrics, no rates', () => {
    const out = computeOutcomes([], [], W, asOf);
    const m = slotMetrics('nightly', out.users, out.slots.nightly, 100, 'any');
    expect(m).toMatchObject({ exposures: 0, users: 0, hitRate: null, userHitRate: null, userHitRateCi: null, errorRate: null, latencyP99: null, coverage: 0 });
  });
});

describe('offline scoring of one list', () => {
  it('hit, NDCG@20 and recall with binary relevance', () => {
    const s = scoreList(['a', 'b', 'c', 'd'], new Set(['b', 'd', 'z']));
    expect(s.hit).toBe(true);
    expect(s.hits).toBe(2);
    // DCG = 1/log2(3) + 1/log2(5); IDCG = 1 + 1/log2(3) + 1/log2(4).
    expect(s.ndcg).toBeCloseTo((1 / Math.log2(3) + 1 / Math.log2(5)) / (1 + 1 / Math.log2(3) + 0.5), 12);
    expect(s.recall).toBeCloseTo(2 / 3, 12);
    expect(scoreList(['a'], new Set(['b']))).toEqual({ hit: false, ndcg: 0, recall: 0, hits: 0 });
    expect(scoreList([], new Set())).toEqual({ hit: false, ndcg: 0, recall: 0, hits: 0 });
  });
});

describe('evaluation settings', () => {
  it('falls back to the defaults without an evaluation block', () => {
    expect(evalSettings({})).toEqual(DEFAULT_EVAL_SETTINGS);
    expect(evalSettings(null).attributionWindowMs).toBe(30 * MIN);
  });

  it('reads a partial block, keeping defaults for what it leaves out', () => {
    const s = evalSettings({ evaluation: { attributionWindow: '15m', judge: { minUsersPerSlot: 50 }, guardrails: { maxP99LatencyMs: 300 }, offline: { minUsers: 5, holdout: '2h' } } });
    expect(s.attributionWindowMs).toBe(15 * MIN);
    expect(s.judge.minUsersPerSlot).toBe(50);
    expect(s.judge.confidence).toBe(DEFAULT_EVAL_SETTINGS.judge.confidence);
    expect(s.guardrails.maxP99LatencyMs).toBe(300);
    expect(s.guardrails.maxErrorRate).toBe(DEFAULT_EVAL_SETTINGS.guardrails.maxErrorRate);
    expect(s.offline.minUsers).toBe(5);
    expect(s.offline.holdoutMs).toBe(2 * 3_600_000);
  });

  it('names a bad key', () => {
    expect(() => evalSettings({ evaluation: { judge: { confidence: 2 } } })).toThrow(/evaluation\.judge\.confidence/);
    expect(() => evalSettings({ evaluation: { attributionWindow: '30 minutes' } })).toThrow(/evaluation\.attributionWindow/);
    expect(() => evalSettings({ evaluation: { typo: 1 } })).toThrow(/typo/);
  });
});
