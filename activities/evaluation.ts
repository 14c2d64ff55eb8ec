/**
 * The evaluation activities of the CanaryRelease workflow: the offline gate before the build, the
 * guardrail checks during the bake, and the judge at its end. All three only read, so a retry or
 * a second run gives the same answer for the same data. Settings come from `evaluation:` in the
 * config (defaults in lib/eval/settings.ts).
 */
import { ApplicationFailure } from '@temporalio/common';
import { checkGuardrailsWith, judgeReleaseWith, offlineGateWith } from '../lib/eval/release.ts';
import { evalSettings } from '../lib/eval/settings.ts';
import { SpecError } from '../lib/models/spec.ts';
import type { GuardrailResult, JudgeResult, OfflineGateResult } from '../lib/release/types.ts';
import type { ActivityDeps } from './deps.ts';
import { heartbeat, heartbeatEvery } from './heartbeat.ts';

export function evaluationActivities({ cfg, pool }: ActivityDeps) {
  const settings = evalSettings(cfg);
  return {
    async offlineGate(input: { model: string }): Promise<OfflineGateResult> {
      try {
        const r = await offlineGateWith(pool, cfg, settings, input.model, { progress: heartbeat });
        return { passed: r.passed, reason: r.reason, table: r.table, numbers: r.numbers };
      } catch (err) {
        // A bad spec file does not get better with retries.
        if (err instanceof SpecError) throw ApplicationFailure.nonRetryable(err.message, 'InvalidSpec');
        throw err;
      }
    },

    async checkGuardrails(input: { releaseId: string }): Promise<GuardrailResult> {
      return checkGuardrailsWith(pool, settings, input.releaseId);
    },

    /**
     * The judge as of `asOf` (the workflow's time at the bake's end), so that a retry judges the
     * same window. Without it (a run from before asOf was passed) the window ends now.
     */
    async judgeRelease(input: { releaseId: string; asOf?: string }): Promise<JudgeResult> {
      const asOf = input.asOf === undefined ? new Date() : new Date(input.asOf);
      if (Number.isNaN(asOf.getTime())) throw ApplicationFailure.nonRetryable(`judgeRelease: asOf ${JSON.stringify(input.asOf)} is not an ISO time`, 'BadInput');
      let step = 'starting';
      // The aggregations are single statements that may run for minutes on a big table: heartbeat while they do.
      const stop = heartbeatEvery(10_000, () => ({ step, asOf: asOf.toISOString() }));
      try {
        const j = await judgeReleaseWith(pool, settings, input.releaseId, asOf, { progress: (p) => { step = p.step; heartbeat({ ...p, asOf: asOf.toISOString() }); } });
        return { verdict: j.verdict, reason: j.reason, explanation: j.explanation, table: j.table, numbers: j.numbers };
      } finally {
        stop();
      }
    },
  };
}
