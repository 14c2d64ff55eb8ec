/**
 * The evaluation activities of the CanaryRelease workflow: the offline gate before the build, the
 * guardrail checks during the bake, and the judge at its end. All three only read, so a retry or
 * a second run gives the same answer for the same data. Settings come from `evaluation:` in the
 * config (defaults in lib/eval/settings.ts).
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { loadConfig } from '../lib/config.ts';
import { checkGuardrailsWith, judgeReleaseWith, offlineGateWith } from '../lib/eval/release.ts';
import { evalSettings } from '../lib/eval/settings.ts';
import { SpecError } from '../lib/models/spec.ts';
import type { GuardrailResult, JudgeResult, OfflineGateResult } from '../lib/release/types.ts';
import { activityPool } from './shared.ts';

function heartbeat(details: unknown): void {
  try {
    Context.current().heartbeat(details);
  } catch { /* called outside an activity (tests, CLI) */ }
}

export async function offlineGate(input: { model: string }): Promise<OfflineGateResult> {
  const cfg = loadConfig();
  try {
    const r = await offlineGateWith(activityPool(), cfg, evalSettings(cfg), input.model, { progress: heartbeat });
    return { passed: r.passed, reason: r.reason, table: r.table, numbers: r.numbers };
  } catch (err) {
    // A bad spec file does not get better with retries.
    if (err instanceof SpecError) throw ApplicationFailure.nonRetryable(err.message, 'InvalidSpec');
    throw err;
  }
}

export async function checkGuardrails(input: { releaseId: string }): Promise<GuardrailResult> {
  const cfg = loadConfig();
  return checkGuardrailsWith(activityPool(), evalSettings(cfg), input.releaseId);
}

export async function judgeRelease(input: { releaseId: string }): Promise<JudgeResult> {
  const cfg = loadConfig();
  const j = await judgeReleaseWith(activityPool(), evalSettings(cfg), input.releaseId);
  return { verdict: j.verdict, reason: j.reason, explanation: j.explanation, table: j.table, numbers: j.numbers };
}
