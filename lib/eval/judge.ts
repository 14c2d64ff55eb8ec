/**
 * The judge: nightly against main for one release, from the online metric per slot.
 *
 * In order, the first rule that applies decides:
 *  1. a slot without users                     → Inconclusive (no data is never a promotion)
 *  2. the configured percent is unknown        → Inconclusive (the split cannot be checked)
 *  3. sample-ratio mismatch (chi-square p < α) → Failed (assignment is broken, so is the comparison)
 *  4. a guardrail broken over the release      → Failed
 *  5. fewer users than the minimum in a slot   → Inconclusive
 *  6. lower bound of nightly − main > −margin  → Successful (non-inferior at the required confidence)
 *  7. upper bound of nightly − main < 0        → Failed (nightly is worse, and not shown non-inferior)
 *  8. otherwise                                → Inconclusive
 * Bounds are one-sided at the configured confidence, on per-user hit outcomes (Agresti–Caffo).
 */
import type { JudgeResult, Verdict } from '../release/types.ts';
import type { SlotMetrics } from './online.ts';
import type { EvalSettings } from './settings.ts';
import { compareProportions, sampleRatioTest, type DifferenceTest, type SrmTest } from './stats.ts';
import { int, num, pct, pts, textTable } from './table.ts';

export interface GuardrailFigures {
  exposures: number;
  errorRate: number | null;
  fallbackRate: number | null;
  latencyP99: number | null;
}

/** Hard limits broken by nightly's figures; nothing is held against fewer than minExposures exposures. */
export function guardrailViolations(f: GuardrailFigures, g: EvalSettings['guardrails']): string[] {
  if (f.exposures < g.minExposures) return [];
  const out: string[] = [];
  if (f.errorRate !== null && f.errorRate > g.maxErrorRate) out.push(`error rate ${pct(f.errorRate, 2)} above the limit of ${pct(g.maxErrorRate, 2)}`);
  if (f.fallbackRate !== null && f.fallbackRate > g.maxFallbackRate) out.push(`fallback rate ${pct(f.fallbackRate, 2)} above the limit of ${pct(g.maxFallbackRate, 2)}`);
  if (f.latencyP99 !== null && f.latencyP99 > g.maxP99LatencyMs) out.push(`p99 latency ${Math.round(f.latencyP99)} ms above the limit of ${g.maxP99LatencyMs} ms`);
  return out;
}

export interface JudgeInput {
  releaseId: string;
  main: SlotMetrics;
  nightly: SlotMetrics;
  /** The share of users configured for nightly, 0–100; null when it cannot be found. */
  nightlyPercent: number | null;
  settings: EvalSettings;
  versions?: { main?: string | null; nightly?: string | null };
  /** The exposures judged: served in [from, to). */
  window?: { from: string | null; to: string };
}

export interface Judgement extends JudgeResult {
  test: DifferenceTest | null;
  srm: SrmTest | null;
  guardrailViolations: string[];
}

export function judge(input: JudgeInput): Judgement {
  const { main, nightly, settings } = input;
  const j = settings.judge;
  const test = compareProportions(main.userHits, main.users, nightly.userHits, nightly.users, j.confidence, j.nonInferiorityMargin);
  const srm = input.nightlyPercent === null ? null : sampleRatioTest(main.users, nightly.users, input.nightlyPercent);
  const violations = guardrailViolations(nightly, settings.guardrails);
  const confidence = `${Math.round(j.confidence * 1000) / 10}%`;

  let verdict: Verdict;
  let reason: string;
  if (main.users === 0 || nightly.users === 0) {
    verdict = 'Inconclusive';
    reason = `no data: ${main.users} users in main and ${nightly.users} in nightly had exposures older than the ${minutes(settings.attributionWindowMs)} attribution window`;
  } else if (input.nightlyPercent === null) {
    verdict = 'Inconclusive';
    reason = 'the configured nightly percent for this release is unknown, so the split cannot be checked';
  } else if (srm !== null && srm.pValue < j.srmPValue) {
    verdict = 'Failed';
    reason = `sample-ratio mismatch: ${pct(nightly.users / (main.users + nightly.users))} of users in nightly against ${input.nightlyPercent}% configured (chi-square ${num(srm.chiSquare, 1)}, p = ${fmtP(srm.pValue)} < ${j.srmPValue})`;
  } else if (violations.length > 0) {
    verdict = 'Failed';
    reason = `guardrails: ${violations.join('; ')}`;
  } else if (main.users < j.minUsersPerSlot || nightly.users < j.minUsersPerSlot) {
    verdict = 'Inconclusive';
    reason = `not enough users yet: ${nightly.users} in nightly and ${main.users} in main, ${j.minUsersPerSlot} needed in each`;
  } else if (test!.low > -j.nonInferiorityMargin) {
    verdict = 'Successful';
    reason = `nightly is non-inferior: hit rate ${pct(nightly.userHitRate)} vs ${pct(main.userHitRate)}, lower bound of the difference ${pts(test!.low, 2)} above the margin of ${pts(-j.nonInferiorityMargin, 2)} at ${confidence}`;
  } else if (test!.high < 0) {
    verdict = 'Failed';
    reason = `nightly is worse: hit rate ${pct(nightly.userHitRate)} vs ${pct(main.userHitRate)}, upper bound of the difference ${pts(test!.high, 2)} below zero at ${confidence}`;
  } else {
    verdict = 'Inconclusive';
    reason = `not sure yet: the difference ${pts(test!.diff, 2)} lies between ${pts(test!.low, 2)} and ${pts(test!.high, 2)}, which neither clears the margin of ${pts(-j.nonInferiorityMargin, 2)} nor rules out no harm at ${confidence}`;
  }

  const numbers = judgeNumbers(input, test, srm, verdict);
  return {
    verdict, reason, test, srm, guardrailViolations: violations,
    explanation: explain(input, verdict, reason, test, srm, violations),
    table: judgeTable(input, test, srm),
    numbers,
  };
}

const minutes = (ms: number): string => (ms % 60_000 === 0 ? `${ms / 60_000}-minute` : `${ms / 1000}-second`);
const fmtP = (p: number): string => (p < 0.0001 ? p.toExponential(1) : p.toFixed(4));

function explain(input: JudgeInput, verdict: Verdict, reason: string, test: DifferenceTest | null, srm: SrmTest | null, violations: string[]): string {
  const { main, nightly, settings } = input;
  const j = settings.judge;
  const v = input.versions ?? {};
  const nv = v.nightly ? ` (${v.nightly})` : '';
  const mv = v.main ? ` (${v.main})` : '';
  const parts: string[] = [];
  const when = input.window ? ` served ${input.window.from ? `from ${input.window.from} ` : ''}until ${input.window.to}` : '';
  parts.push(`Release ${input.releaseId}: the judge compared nightly${nv} with main${mv} on recommendations${when}, counting a list as a hit when the user started one of its movies within ${settings.attributionWindowMs / 60_000} minutes.`);
  if (main.users > 0 && nightly.users > 0) {
    parts.push(`Nightly reached a per-user hit rate of ${pct(nightly.userHitRate)} over ${nightly.users} users (${nightly.exposures} lists) against ${pct(main.userHitRate)} over ${main.users} users (${main.exposures} lists) for main` +
      (test ? `; the difference of ${pts(test.diff, 2)} has a one-sided ${Math.round(j.confidence * 100)}% range of ${pts(test.low, 2)} to ${pts(test.high, 2)}, to be compared with the non-inferiority margin of ${pts(-j.nonInferiorityMargin, 2)}.` : '.'));
  }
  if (srm) {
    parts.push(`The split ${srm.pValue < j.srmPValue ? 'did NOT match' : 'matched'} the configured ${input.nightlyPercent}% (observed ${pct(nightly.users / Math.max(1, main.users + nightly.users))} in nightly, chi-square p = ${fmtP(srm.pValue)}).`);
  }
  if (nightly.exposures > 0) {
    parts.push(violations.length ? `Nightly broke its guardrails: ${violations.join('; ')}.` :
      `Nightly stayed within its guardrails (errors ${pct(nightly.errorRate, 2)}, fallbacks ${pct(nightly.fallbackRate, 2)}, p99 ${nightly.latencyP99 === null ? '–' : Math.round(nightly.latencyP99)} ms).`);
  }
  const action = verdict === 'Successful' ? 'promote nightly' : verdict === 'Failed' ? 'abort the release' : 'wait for more data';
  parts.push(`Verdict: ${verdict} (${action}) because ${reason}.`);
  return parts.join(' ');
}

function judgeTable(input: JudgeInput, test: DifferenceTest | null, srm: SrmTest | null): string {
  const { main: m, nightly: n, settings } = input;
  const ci = (c: { low: number; high: number } | null) => (c ? `${pct(c.low)}–${pct(c.high)}` : '–');
  const rows: string[][] = [
    ['users', int(m.users), int(n.users), ''],
    ['users with a hit', int(m.userHits), int(n.userHits), ''],
    ['per-user hit rate', pct(m.userHitRate), pct(n.userHitRate), test ? pts(test.diff, 2) : '–'],
    ['  95% CI', ci(m.userHitRateCi), ci(n.userHitRateCi), test ? `${pts(test.low, 2)} .. ${pts(test.high, 2)}` : '–'],
    ['exposures', int(m.exposures), int(n.exposures), ''],
    ['hits', int(m.hits), int(n.hits), ''],
    ['hit rate per exposure', pct(m.hitRate, 2), pct(n.hitRate, 2), ''],
    ['  95% CI', ci(m.hitRateCi), ci(n.hitRateCi), ''],
    ['MRR', num(m.mrr, 4), num(n.mrr, 4), ''],
    ['error rate', pct(m.errorRate, 2), pct(n.errorRate, 2), `limit ${pct(settings.guardrails.maxErrorRate, 2)}`],
    ['fallback rate', pct(m.fallbackRate, 2), pct(n.fallbackRate, 2), `limit ${pct(settings.guardrails.maxFallbackRate, 2)}`],
    ['latency p50 (ms)', num(m.latencyP50, 1), num(n.latencyP50, 1), ''],
    ['latency p99 (ms)', num(m.latencyP99, 1), num(n.latencyP99, 1), `limit ${settings.guardrails.maxP99LatencyMs}`],
    ['distinct movies', int(m.distinctMovies), int(n.distinctMovies), ''],
    ['catalog coverage', pct(m.coverage, 2), pct(n.coverage, 2), ''],
    ['share of users', pct(m.users / Math.max(1, m.users + n.users)), pct(n.users / Math.max(1, m.users + n.users)), input.nightlyPercent === null ? 'configured ?' : `configured ${input.nightlyPercent}%`],
    ['SRM chi-square / p', '', '', srm ? `${num(srm.chiSquare, 2)} / ${fmtP(srm.pValue)}` : '–'],
  ];
  return textTable(['metric', 'main', 'nightly', 'nightly − main / check'], rows);
}

function judgeNumbers(input: JudgeInput, test: DifferenceTest | null, srm: SrmTest | null, verdict: Verdict): Record<string, number | string | null> {
  const { main, nightly, settings } = input;
  const out: Record<string, number | string | null> = {
    verdict,
    release_id: input.releaseId,
    main_version: input.versions?.main ?? null,
    nightly_version: input.versions?.nightly ?? null,
    window_from: input.window?.from ?? null,
    window_to: input.window?.to ?? null,
    attribution_window_ms: settings.attributionWindowMs,
    user_outcome: settings.userOutcome,
    configured_percent: input.nightlyPercent,
    min_users_per_slot: settings.judge.minUsersPerSlot,
    margin: settings.judge.nonInferiorityMargin,
    confidence: settings.judge.confidence,
    srm_alpha: settings.judge.srmPValue,
    max_error_rate: settings.guardrails.maxErrorRate,
    max_fallback_rate: settings.guardrails.maxFallbackRate,
    max_p99_latency_ms: settings.guardrails.maxP99LatencyMs,
    diff: test?.diff ?? null,
    diff_adjusted: test?.adjustedDiff ?? null,
    diff_se: test?.se ?? null,
    diff_low: test?.low ?? null,
    diff_high: test?.high ?? null,
    z: test?.z ?? null,
    p_value: test?.pValue ?? null,
    non_inferiority_p: test?.nonInferiorityP ?? null,
    srm_chi_square: srm ? (Number.isFinite(srm.chiSquare) ? srm.chiSquare : 'Infinity') : null,
    srm_p_value: srm?.pValue ?? null,
  };
  for (const s of [main, nightly]) {
    for (const k of ['users', 'userHits', 'userHitRate', 'exposures', 'hits', 'hitRate', 'mrr', 'errors', 'errorRate', 'fallbacks', 'fallbackRate', 'latencyP50', 'latencyP99', 'distinctMovies', 'coverage'] as const) {
      out[`${s.slot}_${k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}`] = s[k];
    }
    out[`${s.slot}_hit_rate_ci_low`] = s.hitRateCi?.low ?? null;
    out[`${s.slot}_hit_rate_ci_high`] = s.hitRateCi?.high ?? null;
  }
  out.catalog_size = main.catalogSize;
  return out;
}
