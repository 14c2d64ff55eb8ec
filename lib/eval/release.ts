/**
 * Evaluation of a release against the live tables: which spec main runs, which percent the
 * release was configured with, the guardrail check during the bake, the judge at its end, and the
 * offline gate before it. Read-only, so the activities built on these can run any number of times.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { projectRoot, type Config } from '../config.ts';
import type { Pool } from '../db.ts';
import { loadSpec, type LoadedSpec } from '../models/spec.ts';
import type { GuardrailResult, OfflineGateResult } from '../release/types.ts';
import { guardrailViolations, judge, type Judgement } from './judge.ts';
import { chromaVectors, MissingVectorsError, runOffline, type EvaluateOptions, type OfflineRun } from './offline.ts';
import { loadSlotAggregates, onlineMetrics, type OnlineMetrics } from './online.ts';
import type { EvalSettings } from './settings.ts';
import { fairnessNumbers, fairnessViolations, releaseExposure } from '../report/release.ts';

type Queryable = Pick<Pool, 'query'>;

/** The spec main serves: releases.model_spec of routing_state.main_version, else models/<main_version>.json (seed-baseline before any routing). */
export async function mainSpecPath(db: Queryable): Promise<{ version: string; path: string }> {
  const { rows } = await db.query<{ main_version: string; model_spec: string | null }>(
    `SELECT r.main_version, rel.model_spec FROM routing_state r LEFT JOIN releases rel ON rel.id = r.main_version WHERE r.id = 1`);
  const version = rows[0]?.main_version ?? 'seed-baseline';
  if (rows[0]?.model_spec) return { version, path: rows[0].model_spec };
  const file = `models/${version}.json`;
  if (!existsSync(path.join(projectRoot, file))) throw new Error(`main runs version "${version}", which is neither a recorded release nor a spec file ${file}`);
  return { version, path: file };
}

/**
 * The nightly percent the release ran with: routing_state while it is the current release, else the
 * last routing change that gave it a canary share (0 < percent < 100: a promotion briefly routes
 * 100 %, which is not the split the users were drawn with).
 */
export async function releasePercent(db: Queryable, releaseId: string): Promise<{ percent: number | null; source: string }> {
  const { rows: state } = await db.query<{ nightly_percent: number }>(
    'SELECT nightly_percent FROM routing_state WHERE id = 1 AND release_id = $1 AND nightly_percent > 0 AND nightly_percent < 100', [releaseId]);
  if (state[0]) return { percent: state[0].nightly_percent, source: 'routing_state' };
  const { rows: changes } = await db.query<{ percent: number }>(
    `SELECT (after->>'nightlyPercent')::int AS percent FROM routing_changes
     WHERE after->>'releaseId' = $1 AND (after->>'nightlyPercent')::int > 0 AND (after->>'nightlyPercent')::int < 100
     ORDER BY id DESC LIMIT 1`, [releaseId]);
  if (changes[0]) return { percent: changes[0].percent, source: 'routing_changes' };
  return { percent: null, source: 'not recorded' };
}

/** The model version each slot served for the release (the most frequent, normally the only one). */
export async function releaseVersions(db: Queryable, releaseId: string): Promise<{ main: string | null; nightly: string | null }> {
  const { rows } = await db.query<{ slot: string; model_version: string | null }>(
    `SELECT DISTINCT ON (slot) slot, model_version FROM served_recommendations
     WHERE release_id = $1 AND slot IN ('main', 'nightly') AND model_version IS NOT NULL
     GROUP BY slot, model_version ORDER BY slot, count(*) DESC`, [releaseId]);
  const get = (s: string) => rows.find((r) => r.slot === s)?.model_version ?? null;
  return { main: get('main'), nightly: get('nightly') };
}

export interface JudgeRun extends Judgement {
  metrics: OnlineMetrics;
  percentSource: string;
}

/**
 * The judge's verdict on a release as of `asOf` (default now). `progress` hears of each finished
 * aggregation, so an activity can heartbeat through the long ones.
 */
export async function judgeReleaseWith(db: Queryable, settings: EvalSettings, releaseId: string, asOf = new Date(),
  opts: { progress?: (p: { step: string }) => void } = {}): Promise<JudgeRun> {
  const done = <T>(step: string) => (v: T): T => { opts.progress?.({ step }); return v; };
  opts.progress?.({ step: 'aggregating served lists and outcomes' });
  const [metrics, percent, versions] = await Promise.all([
    onlineMetrics(db, releaseId, { windowMs: settings.attributionWindowMs, userOutcome: settings.userOutcome, asOf }).then(done('online metrics aggregated')),
    releasePercent(db, releaseId).then(done('release percent read')),
    releaseVersions(db, releaseId).then(done('slot versions read')),
  ]);
  const j = judge({
    releaseId, main: metrics.slots.main, nightly: metrics.slots.nightly, nightlyPercent: percent.percent, settings, versions,
    window: { from: metrics.from, to: metrics.to },
  });
  j.numbers.configured_percent_source = percent.source;
  // Exposure fairness beside the hit rates, over the same judged lists (issue 15).
  Object.assign(j.numbers, fairnessNumbers(await releaseExposure(db, releaseId, metrics.from ?? metrics.to, metrics.to)));
  return { ...j, metrics, percentSource: percent.source };
}

/** Nightly's error rate, fallback rate and p99 latency over the recent window, against the hard limits. */
export async function checkGuardrailsWith(db: Queryable, settings: EvalSettings, releaseId: string, asOf = new Date()): Promise<GuardrailResult> {
  const g = settings.guardrails;
  const from = new Date(asOf.getTime() - g.windowMs);
  const n = (await loadSlotAggregates(db, releaseId, from, asOf)).nightly;
  const figures = {
    exposures: n.exposures,
    errorRate: n.exposures > 0 ? n.errors / n.exposures : null,
    fallbackRate: n.exposures > 0 ? n.fallbacks / n.exposures : null,
    latencyP99: n.latencyP99,
  };
  const violations = guardrailViolations(figures, g);
  const limits = g.fairness;
  const fairness = limits && Object.values(limits).some((x) => x !== null) && n.exposures >= g.minExposures
    ? await releaseExposure(db, releaseId, from, asOf) : null;
  if (fairness && limits) violations.push(...fairnessViolations(fairness, limits));
  return {
    ok: violations.length === 0,
    violations,
    numbers: {
      release_id: releaseId,
      window_from: from.toISOString(),
      window_to: asOf.toISOString(),
      exposures: n.exposures,
      errors: n.errors,
      error_rate: figures.errorRate,
      fallbacks: n.fallbacks,
      fallback_rate: figures.fallbackRate,
      latency_p50_ms: n.latencyP50,
      latency_p99_ms: n.latencyP99,
      max_error_rate: g.maxErrorRate,
      max_fallback_rate: g.maxFallbackRate,
      max_p99_latency_ms: g.maxP99LatencyMs,
      min_exposures: g.minExposures,
      ...(fairness ? fairnessNumbers(fairness) : {}),
      note: n.exposures < g.minExposures ? `only ${n.exposures} nightly exposures in the window; limits are held from ${g.minExposures}` : null,
    },
  };
}

/** A spec path, resolved like the release input (relative to the project root). */
export function resolveSpec(file: string): LoadedSpec {
  return loadSpec(file);
}

export interface OfflineGateRun extends OfflineGateResult {
  run: OfflineRun | null;
}

/**
 * The offline gate of a candidate spec against main's spec (or `against`). A collection that does
 * not exist fails the gate (the release could not serve either); other errors propagate so the
 * activity is retried.
 */
export async function offlineGateWith(db: Queryable, cfg: Pick<Config, 'chroma'>, settings: EvalSettings, model: string,
  opts: Partial<EvaluateOptions> & { against?: string; cutoff?: Date } = {}): Promise<OfflineGateRun> {
  const candidate = resolveSpec(model);
  const mainPath = opts.against ?? (await mainSpecPath(db)).path;
  const main = resolveSpec(mainPath);
  try {
    const run = await runOffline(db, candidate, main, settings.offline, { vectors: opts.vectors ?? chromaVectors(cfg), progress: opts.progress, concurrency: opts.concurrency, cutoff: opts.cutoff });
    return { passed: run.passed, reason: run.reason, table: run.table, numbers: run.numbers, run };
  } catch (err) {
    if (!(err instanceof MissingVectorsError)) throw err;
    return {
      passed: false,
      reason: err.message,
      table: `offline evaluation not possible: ${err.message}`,
      numbers: { candidate_spec: candidate.path, main_spec: main.path, missing_collection: err.collection },
      run: null,
    };
  }
}

