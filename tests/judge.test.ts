import { describe, expect, it } from 'vitest';
import { guardrailViolations, judge, type JudgeInput } from '../lib/eval/judge.ts';
import type { SlotMetrics } from '../lib/eval/online.ts';
import { DEFAULT_EVAL_SETTINGS, type EvalSettings } from '../lib/eval/settings.ts';
import { errorRateStudy, simulateComparison } from '../lib/eval/simulate.ts';
import type { Slot } from '../lib/routing.ts';

function slot(s: Slot, users: number, userHits: number, o: Partial<SlotMetrics> = {}): SlotMetrics {
  const exposures = users * 2;
  return {
    slot: s, exposures, hits: userHits, hitRate: exposures ? userHits / exposures : null, hitRateCi: null, mrr: null,
    users, userHits, userHitRate: users ? userHits / users : null, userHitRateCi: null,
    errors: 0, errorRate: exposures ? 0 : null, fallbacks: 0, fallbackRate: exposures ? 0 : null,
    latencyP50: exposures ? 40 : null, latencyP99: exposures ? 120 : null, distinctMovies: 100, catalogSize: 1000, coverage: 0.1, ...o,
  };
}

const settings: EvalSettings = DEFAULT_EVAL_SETTINGS;
const input = (main: SlotMetrics, nightly: SlotMetrics, o: Partial<JudgeInput> = {}): JudgeInput => ({ releaseId: 'r1', main, nightly, nightlyPercent: 20, settings, ...o });

describe('the judge', () => {
  it('no data at all is Inconclusive, never Successful', () => {
    const j = judge(input(slot('main', 0, 0), slot('nightly', 0, 0)));
    expect(j.verdict).toBe('Inconclusive');
    expect(j.reason).toMatch(/^no data/);
    expect(j.test).toBeNull();
    expect(j.numbers.main_users).toBe(0);
    expect(j.explanation).toMatch(/Verdict: Inconclusive/);
  });

  it('data in one slot only is Inconclusive', () => {
    expect(judge(input(slot('main', 5000, 1000), slot('nightly', 0, 0))).verdict).toBe('Inconclusive');
  });

  it('clearly better nightly with enough users is Successful, with every number', () => {
    const j = judge(input(slot('main', 8000, 1600), slot('nightly', 2000, 500), { versions: { main: 'seed-baseline', nightly: 'v2' } }));
    expect(j.verdict).toBe('Successful');
    expect(j.reason).toMatch(/non-inferior/);
    expect(j.numbers.main_user_hit_rate).toBeCloseTo(0.2, 12);
    expect(j.numbers.nightly_user_hit_rate).toBeCloseTo(0.25, 12);
    expect(j.numbers.diff).toBeCloseTo(0.05, 12);
    expect(Number(j.numbers.diff_low)).toBeGreaterThan(-settings.judge.nonInferiorityMargin);
    expect(j.numbers.srm_p_value).toBeCloseTo(1, 6);
    expect(j.numbers.nightly_version).toBe('v2');
    expect(j.table).toMatch(/per-user hit rate\s+20\.0%\s+25\.0%\s+\+5\.00 pts/);
    expect(j.explanation).toMatch(/Release r1: .*nightly \(v2\) with main \(seed-baseline\).*25\.0% over 2000 users.*Verdict: Successful \(promote nightly\)/);
    expect(j.explanation.split('\n')).toHaveLength(1);
  });

  it('clearly worse nightly is Failed; a close call is Inconclusive', () => {
    expect(judge(input(slot('main', 8000, 2000), slot('nightly', 2000, 300))).verdict).toBe('Failed');
    const close = judge(input(slot('main', 8000, 1600), slot('nightly', 2000, 380)));
    expect(close.verdict).toBe('Inconclusive');
    expect(close.reason).toMatch(/^not sure yet/);
  });

  it('below the minimum sample size is Inconclusive even when nightly looks far better', () => {
    const j = judge(input(slot('main', 4000, 400), slot('nightly', 1000, 900)));
    expect(j.verdict).toBe('Inconclusive');
    expect(j.reason).toMatch(/not enough users yet: 1000 in nightly/);
  });

  it('a sample-ratio mismatch is Failed even when nightly looks better', () => {
    // 50/50 observed against 20 % configured.
    const j = judge(input(slot('main', 5000, 1000), slot('nightly', 5000, 1500)));
    expect(j.verdict).toBe('Failed');
    expect(j.reason).toMatch(/^sample-ratio mismatch: 50\.0% of users in nightly against 20% configured/);
    expect(Number(j.numbers.srm_p_value)).toBeLessThan(1e-6);
    expect(j.explanation).toMatch(/did NOT match/);
    // The same counts are fine when 50 % was configured.
    expect(judge(input(slot('main', 5000, 1000), slot('nightly', 5000, 1500), { nightlyPercent: 50 })).verdict).toBe('Successful');
  });

  it('an unknown configured percent is Inconclusive', () => {
    const j = judge(input(slot('main', 8000, 1600), slot('nightly', 2000, 500), { nightlyPercent: null }));
    expect(j.verdict).toBe('Inconclusive');
    expect(j.reason).toMatch(/percent .* unknown/);
  });

  it('broken guardrails fail the release whatever the hit rate', () => {
    const nightly = slot('nightly', 2000, 600, { errors: 200, errorRate: 0.05, latencyP99: 900 });
    const j = judge(input(slot('main', 8000, 1600), nightly));
    expect(j.verdict).toBe('Failed');
    expect(j.guardrailViolations).toEqual(['error rate 5.00% above the limit of 2.00%', 'p99 latency 900 ms above the limit of 600 ms']);
  });

  it('guardrails are not held against too few exposures', () => {
    const g = settings.guardrails;
    expect(guardrailViolations({ exposures: g.minExposures - 1, errorRate: 1, fallbackRate: 1, latencyP99: 1e6 }, g)).toEqual([]);
    expect(guardrailViolations({ exposures: g.minExposures, errorRate: 0, fallbackRate: 0.5, latencyP99: null }, g)).toHaveLength(1);
  });
});

describe('the judge on simulated comparisons (metric layer)', () => {
  it('promotes a clearly better nightly and fails a clearly worse one', () => {
    const s = { ...settings, judge: { ...settings.judge, minUsersPerSlot: 300 } };
    expect(simulateComparison({ seed: 1, usersPerSlot: { main: 1200, nightly: 300 }, hitRate: { main: 0.2, nightly: 0.4 }, settings: s }).verdict).toBe('Successful');
    expect(simulateComparison({ seed: 2, usersPerSlot: { main: 1200, nightly: 300 }, hitRate: { main: 0.4, nightly: 0.2 }, settings: s }).verdict).toBe('Failed');
    // A good nightly with a broken split: Failed.
    const srm = simulateComparison({ seed: 3, usersPerSlot: { main: 700, nightly: 300 }, hitRate: { main: 0.2, nightly: 0.4 }, configuredPercent: 10, settings: s });
    expect(srm.verdict).toBe('Failed');
    expect(srm.reason).toMatch(/sample-ratio mismatch/);
  });

  it('error rates at the default sample size: ≤ 5% wrong promotions, ≥ 80% right ones', () => {
    const rows = errorRateStudy(settings, { runs: 100, baseRates: [0.3], seed: 7 });
    const worse = rows.find((r) => r.scenario === 'worse by the margin')!;
    const better = rows.find((r) => r.scenario === 'better by twice the margin')!;
    expect(worse.runs).toBe(100);
    expect(worse.promoted).toBeLessThanOrEqual(0.05);
    expect(better.promoted).toBeGreaterThanOrEqual(0.8);
  }, 120_000);
});
