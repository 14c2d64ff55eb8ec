/**
 * Release-time fairness: the judge's numbers (hence `marquee eval online` and the release mail)
 * carry each slot's exposure Gini, coverage and ARP, and the guardrails hold nightly to limits
 * only when temporal.yaml sets them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../lib/config.ts';
import { databaseUrl } from '../lib/db.ts';
import { checkGuardrailsWith, judgeReleaseWith } from '../lib/eval/release.ts';
import { DEFAULT_EVAL_SETTINGS, evalSettings, type EvalSettings } from '../lib/eval/settings.ts';
import { formatReleaseEmail } from '../lib/release/report.ts';
import type { ReleaseStatus } from '../lib/release/types.ts';
import { runMarquee } from './support/cli.ts';
import { scratchDatabase } from './support/db.ts';

const HOUR = 3_600_000;
const movies = Array.from({ length: 10 }, (_, i) => `fair+movie+${i}`);

describe('release-time fairness', () => {
  let db: Awaited<ReturnType<typeof scratchDatabase>>;
  const asOf = new Date(Date.now() - HOUR);
  beforeAll(async () => {
    db = await scratchDatabase('fairness');
    await db.pool.query('INSERT INTO movies (id) SELECT unnest($1::text[])', [movies]);
    // Popularity: movie i has i watchers (movie 0 none).
    for (let i = 1; i < 10; i++) {
      await db.pool.query(`INSERT INTO watches (user_id, movie_id, first_at, last_at, minutes, max_minute)
        SELECT 9000 + k, $1, now() - interval '3 days', now() - interval '3 days', 10, 10 FROM generate_series(1, $2) k`, [movies[i], i]);
    }
    // 60 lists each, 3 hours ago: main shows movies 0–3 evenly, nightly only 8 and 9.
    for (let u = 0; u < 60; u++) {
      const at = new Date(asOf.getTime() - 2 * HOUR + u * 1000);
      await db.pool.query(`INSERT INTO served_recommendations (served_at, user_id, slot, release_id, movie_ids, latency_ms) VALUES
        ($1, $2, 'main', 'r1', $3, 10), ($1, $4, 'nightly', 'r1', $5, 10)`, [at, u, u % 2 ? [movies[0], movies[1]] : [movies[2], movies[3]], 1000 + u, [movies[8], movies[9]]]);
    }
  });
  afterAll(async () => { await db?.drop(); });

  it('the judge carries Gini, coverage and ARP per slot, and the mail and eval online show them', async () => {
    const j = await judgeReleaseWith(db.pool, DEFAULT_EVAL_SETTINGS, 'r1', asOf);
    // main: 4 of 10 movies, 30 exposures each: (3+5+7+9)·30 / (10·120) = 0.6; nightly: 2 × 60: (7+9)·60 / (10·120) = 0.8
    expect(j.numbers.main_exposure_gini).toBeCloseTo(0.6, 12);
    expect(j.numbers.nightly_exposure_gini).toBeCloseTo(0.8, 12);
    expect(j.numbers.main_exposure_coverage).toBeCloseTo(0.4, 12);
    expect(j.numbers.nightly_exposure_coverage).toBeCloseTo(0.2, 12);
    // ARP: main lists [0,1] → 0.5 and [2,3] → 2.5, mean 1.5; nightly [8,9] → 8.5
    expect(j.numbers.main_arp).toBeCloseTo(1.5, 9);
    expect(j.numbers.nightly_arp).toBeCloseTo(8.5, 9);
    const status: ReleaseStatus = { version: 'r1', model: 'models/taste-v1.json', percent: 50, phase: 'promoted', phaseTimes: {}, guardrailChecks: 0,
      consecutiveGuardrailFailures: 0, extended: false, decision: 'aborted', reason: 'test', judge: { verdict: j.verdict, reason: j.reason, explanation: j.explanation, table: j.table, numbers: j.numbers } };
    const mail = formatReleaseEmail(status).text;
    expect(mail).toMatch(/exposure Gini\s+0\.600\s+0\.800/);
    expect(mail).toMatch(/catalogue coverage\s+40\.0 %\s+20\.0 %/);
    expect(mail).toMatch(/ARP \(mean watchers\)\s+1\.5\s+8\.5/);
    const cli = await runMarquee(['eval', 'online', '--release', 'r1', '--at', asOf.toISOString()], {
      env: { MARQUEE_POSTGRES_URL: databaseUrl(loadConfig(), db.name) }, timeoutMs: 60_000,
    });
    expect(cli.code, cli.out).toBe(0);
    expect(cli.out).toMatch(/exposure Gini\s+0\.600\s+0\.800/);
  });

  it('guardrails bound nightly only when the limits are set', async () => {
    const window = { ...DEFAULT_EVAL_SETTINGS.guardrails, windowMs: 4 * HOUR, minExposures: 20 };
    const off = await checkGuardrailsWith(db.pool, { ...DEFAULT_EVAL_SETTINGS, guardrails: window }, 'r1', asOf);
    expect(off.violations).toEqual([]);
    const limits: EvalSettings = { ...DEFAULT_EVAL_SETTINGS, guardrails: { ...window, fairness: { maxExposureGini: 0.7, minExposureCoverage: 0.3, maxArpRatio: 2 } } };
    const on = await checkGuardrailsWith(db.pool, limits, 'r1', asOf);
    expect(on.ok).toBe(false);
    expect(on.violations).toEqual([
      'exposure Gini 0.800 above the limit of 0.7',
      'catalogue coverage 20.0 % below the limit of 30.0 %',
      'ARP 8.5 is 5.67× main\'s 1.5, above the limit of 2×',
    ]);
    expect(on.numbers.nightly_exposure_gini).toBeCloseTo(0.8, 12);
    // The temporal.yaml keys, validated like the others.
    expect(evalSettings({ evaluation: { guardrails: { maxExposureGini: 0.7 } } }).guardrails.fairness).toEqual({ maxExposureGini: 0.7, minExposureCoverage: null, maxArpRatio: null });
    expect(() => evalSettings({ evaluation: { guardrails: { maxExposureGini: 2 } } })).toThrow(/evaluation\.guardrails\.maxExposureGini/);
  });
});
