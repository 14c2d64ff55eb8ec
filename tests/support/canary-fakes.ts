import type { Activities } from '../../activities/index.ts';
import type { BuiltImage, GuardrailResult, JudgeResult, OfflineGateResult, ReleaseStatus } from '../../lib/release/types.ts';

/**
 * Stand-ins for the canary's activities in the workflow unit tests (time-skipping server): they
 * record every call and answer as a scenario says. The real activities are tested end to end.
 */
export interface Scenario {
  offlinePassed?: boolean;
  buildFails?: boolean;
  /** The mail server refuses every attempt. */
  mailDown?: boolean;
  guardrails?: (check: number) => boolean;
  verdicts?: JudgeResult['verdict'][];
}

/** The activities CanaryRelease calls, typed by the real ones: a renamed activity or a changed signature fails the type check. */
export type CanaryActivities = Pick<Activities, 'releaseDefaults' | 'beginRelease' | 'recordPhase' | 'offlineGate' | 'buildInferenceImage' | 'deploySlot'
  | 'removeSlot' | 'setRouting' | 'checkGuardrails' | 'judgeRelease' | 'promoteSlot' | 'finishRelease' | 'notifyReleaseOutcome'>;

export function fakeActivities(scenario: Scenario) {
  const calls: { name: string; args: unknown }[] = [];
  const record = (name: string, args: unknown) => { calls.push({ name, args }); };
  let guardrailCheck = 0;
  let judgeCall = 0;
  const mails: { to: string[]; status: ReleaseStatus }[] = [];
  const routing: { percent: number; releaseId: string | null }[] = [];
  const slots = new Map<string, string>();

  const activities: CanaryActivities = {
    releaseDefaults: async () => ({ percent: 20, bake: '12h', interval: '30m', notify: ['oncall@localhost'], maxConsecutiveGuardrailFailures: 3, inconclusiveExtension: '6h' }),
    beginRelease: async (a: unknown) => record('beginRelease', a),
    recordPhase: async (a: { phase: string }) => record('recordPhase', a),
    offlineGate: async (a: unknown): Promise<OfflineGateResult> => {
      record('offlineGate', a);
      const passed = scenario.offlinePassed ?? true;
      return { passed, reason: passed ? 'hit@20 +12% over main' : 'hit@20 -8% vs main', table: 'model  hit@20', numbers: {} };
    },
    buildInferenceImage: async (a: { version: string }): Promise<BuiltImage> => {
      record('buildInferenceImage', a);
      if (scenario.buildFails) {
        const { ApplicationFailure } = await import('@temporalio/activity');
        throw ApplicationFailure.nonRetryable('image build failed: RUN exited with 7', 'BuildFailed');
      }
      return { image: `marquee-inference:${a.version}`, imageId: 'sha256:abc', gitCommit: 'c0ffee', specHash: 'h', runtime: 'docker' };
    },
    deploySlot: async (a: { slot: string; version: string }) => { record('deploySlot', a); slots.set(a.slot, a.version); return { url: 'http://x', id: '1' }; },
    removeSlot: async (a: { slot: string }) => { record('removeSlot', a); return slots.delete(a.slot); },
    setRouting: async (a: { percent: number; releaseId: string | null }) => { record('setRouting', a); routing.push({ percent: a.percent, releaseId: a.releaseId }); },
    checkGuardrails: async (a: unknown): Promise<GuardrailResult> => {
      record('checkGuardrails', a);
      const ok = scenario.guardrails ? scenario.guardrails(++guardrailCheck) : true;
      return { ok, violations: ok ? [] : ['nightly error rate 12% > 5%'], numbers: {} };
    },
    judgeRelease: async (a: unknown): Promise<JudgeResult> => {
      record('judgeRelease', a);
      const verdicts = scenario.verdicts ?? ['Successful'];
      const verdict = verdicts[Math.min(judgeCall++, verdicts.length - 1)];
      return { verdict, reason: `hit rate nightly vs main: ${verdict}`, explanation: 'because', table: 'slot  hits', numbers: {} };
    },
    promoteSlot: async (a: { version: string }) => { record('promoteSlot', a); slots.set('main', a.version); slots.delete('nightly'); },
    finishRelease: async (a: unknown) => record('finishRelease', a),
    notifyReleaseOutcome: async (a: { to: string[]; status: ReleaseStatus }) => {
      record('notifyReleaseOutcome', a);
      if (scenario.mailDown) throw new Error('connect ECONNREFUSED 127.0.0.1:2525');
      mails.push(a);
      return { messageId: 'm' };
    },
  };
  return { activities, calls, mails, routing, slots, names: () => calls.map((c) => c.name) };
}
