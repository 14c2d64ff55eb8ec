/**
 * The evaluation settings: the online metric's attribution window, the judge's thresholds and
 * guardrails, and the offline gate. They belong in temporal.yaml under `evaluation:`; until that
 * section exists (or when a key is left out) the defaults below apply, so the code works either way.
 */
import { z } from 'zod';
import { DURATION_HINT, DURATION_PATTERN, durationMs } from '../duration.ts';

const duration = z.string().regex(DURATION_PATTERN, DURATION_HINT);
const share = z.number().min(0).max(1);


/** The schema of the `evaluation:` block (every key optional: missing keys take the defaults). */
export const evaluationSchema = z.strictObject({
  /** A served list is a hit when the user starts one of its movies within this long. */
  attributionWindow: duration.optional(),
  /** Per-user outcome: 'any' counts a user as a hit when any of their exposures was; 'first' uses only their first exposure. */
  userOutcome: z.enum(['any', 'first']).optional(),
  judge: z.strictObject({
    /** Users with counted exposures needed in each slot before the judge decides anything but Failed. */
    minUsersPerSlot: z.number().int().min(1).optional(),
    /** Nightly may be at most this much worse than main (absolute difference of per-user hit rates). */
    nonInferiorityMargin: z.number().min(0).max(1).optional(),
    /** One-sided confidence required for promoting (and for failing on a worse hit rate). */
    confidence: z.number().gt(0.5).lt(1).optional(),
    /** A sample-ratio-mismatch chi-square p-value below this fails the comparison. */
    srmPValue: z.number().gt(0).lt(1).optional(),
  }).optional(),
  guardrails: z.strictObject({
    /** How far back checkGuardrails looks during the bake. */
    window: duration.optional(),
    /** Minimum exposures in the window before a rate is held against its limit. */
    minExposures: z.number().int().min(1).optional(),
    /** Share of nightly's requests it failed to answer (errors, timeouts, down). */
    maxErrorRate: share.optional(),
    /** Share of nightly-assigned requests answered by another slot or the popular list. */
    maxFallbackRate: share.optional(),
    /** p99 of the gateway's answer time for nightly-assigned requests, in ms. */
    maxP99LatencyMs: z.number().positive().optional(),
    /** Release-time fairness of nightly's lists (lib/report/release.ts); each is off unless set. */
    maxExposureGini: z.number().min(0).max(1).optional(),
    minExposureCoverage: share.optional(),
    /** Nightly's ARP over main's. */
    maxArpRatio: z.number().positive().optional(),
  }).optional(),
  offline: z.strictObject({
    /**
     * Where the history is split: at `cutoff` (an ISO time) when given, else `holdout` before the
     * last watch when given, else so that the last `testFraction` of all watches fall after it.
     */
    cutoff: z.iso.datetime({ offset: true }).optional(),
    holdout: duration.optional(),
    testFraction: z.number().gt(0).lt(1).optional(),
    /** Users evaluated at most (sampled deterministically when more are active after the cutoff). */
    maxUsers: z.number().int().min(1).optional(),
    /** Below this many users the gate fails: no evidence is not evidence of no harm. */
    minUsers: z.number().int().min(1).optional(),
    /** The candidate's hit@20 relative to main's must be at least this (-0.02: at most 2 % worse). */
    minRelativeDifference: z.number().min(-1).max(10).optional(),
  }).optional(),
});

export type EvaluationConfig = z.infer<typeof evaluationSchema>;

export interface EvalSettings {
  attributionWindowMs: number;
  userOutcome: 'any' | 'first';
  judge: { minUsersPerSlot: number; nonInferiorityMargin: number; confidence: number; srmPValue: number };
  guardrails: { windowMs: number; minExposures: number; maxErrorRate: number; maxFallbackRate: number; maxP99LatencyMs: number;
    /** Exposure limits on nightly; absent or null = not checked. */
    fairness?: { maxExposureGini: number | null; minExposureCoverage: number | null; maxArpRatio: number | null } };
  offline: { cutoff: string | null; holdoutMs: number | null; testFraction: number; maxUsers: number; minUsers: number; minRelativeDifference: number };
}

export const DEFAULT_EVAL_SETTINGS: EvalSettings = {
  attributionWindowMs: 30 * 60_000,
  userOutcome: 'any',
  judge: { minUsersPerSlot: 1200, nonInferiorityMargin: 0.02, confidence: 0.975, srmPValue: 0.001 },
  guardrails: { windowMs: 30 * 60_000, minExposures: 50, maxErrorRate: 0.02, maxFallbackRate: 0.05, maxP99LatencyMs: 600,
    fairness: { maxExposureGini: null, minExposureCoverage: null, maxArpRatio: null } },
  offline: { cutoff: null, holdoutMs: null, testFraction: 0.1, maxUsers: 2000, minUsers: 200, minRelativeDifference: 0 },
};

/**
 * The settings from a loaded config (anything with an optional `evaluation` key), defaults for
 * what it leaves out. Throws naming the key when the block is malformed.
 */
export function evalSettings(cfg?: object | null): EvalSettings {
  const raw = (cfg as { evaluation?: unknown } | null | undefined)?.evaluation;
  if (raw === undefined || raw === null) return structuredClone(DEFAULT_EVAL_SETTINGS);
  const parsed = evaluationSchema.safeParse(raw);
  if (!parsed.success) {
    throw new Error(`invalid evaluation settings:\n  - ${parsed.error.issues.map((i) => `evaluation.${i.path.join('.')}: ${i.message}`).join('\n  - ')}`);
  }
  const e = parsed.data;
  const d = DEFAULT_EVAL_SETTINGS;
  const g = e.guardrails ?? {};
  const o = e.offline ?? {};
  return {
    attributionWindowMs: e.attributionWindow ? durationMs(e.attributionWindow) : d.attributionWindowMs,
    userOutcome: e.userOutcome ?? d.userOutcome,
    judge: { ...d.judge, ...stripUndefined(e.judge ?? {}) },
    guardrails: {
      windowMs: g.window ? durationMs(g.window) : d.guardrails.windowMs,
      minExposures: g.minExposures ?? d.guardrails.minExposures,
      maxErrorRate: g.maxErrorRate ?? d.guardrails.maxErrorRate,
      maxFallbackRate: g.maxFallbackRate ?? d.guardrails.maxFallbackRate,
      maxP99LatencyMs: g.maxP99LatencyMs ?? d.guardrails.maxP99LatencyMs,
      fairness: { maxExposureGini: g.maxExposureGini ?? null, minExposureCoverage: g.minExposureCoverage ?? null, maxArpRatio: g.maxArpRatio ?? null },
    },
    offline: {
      cutoff: o.cutoff ?? d.offline.cutoff,
      holdoutMs: o.holdout ? durationMs(o.holdout) : d.offline.holdoutMs,
      testFraction: o.testFraction ?? d.offline.testFraction,
      maxUsers: o.maxUsers ?? d.offline.maxUsers,
      minUsers: o.minUsers ?? d.offline.minUsers,
      minRelativeDifference: o.minRelativeDifference ?? d.offline.minRelativeDifference,
    },
  };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
