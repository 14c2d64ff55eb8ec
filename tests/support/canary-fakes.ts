import { ApplicationFailure } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import type { Activities } from '../../activities/index.ts';
import { reconcilePlan, RECONCILED_PHASE, type ReconcilePlan, type ReconcileResult } from '../../lib/release/reconcile.ts';
import type { BuiltImage, GuardrailResult, JudgeResult, OfflineGateResult, ReleaseStatus } from '../../lib/release/types.ts';
import { TERMINAL_PHASES } from '../../lib/release/types.ts';
import { workflowState } from '../../lib/release/workflow-state.ts';

/**
 * Stand-ins for the canary's activities in the workflow unit tests (time-skipping server): they
 * record every call and answer as a scenario says. The real activities are tested end to end.
 */
export interface Scenario {
  offlinePassed?: boolean;
  buildFails?: boolean;
  /** The mail server refuses every attempt. */
  mailDown?: boolean;
  /** The mail server refuses this many attempts, then takes the mail. */
  mailFailures?: number;
  /** Routing back to main (percent 0) fails this many times (gateway down), then succeeds. */
  routeBackFailures?: number;
  /** promoteSlot takes this long (real time), so that a test can signal during `promoting`. */
  promoteMs?: number;
  /** promoteSlot fails (non-retryable) after promoteMs. */
  promoteFails?: boolean;
  guardrails?: (check: number) => boolean;
  verdicts?: JudgeResult['verdict'][];
}

/** What the fakes share across releases, as the real tables, gateway and runtime would. */
export interface FakeWorld {
  rows: Map<string, { phase: string; workflowId: string; runId: string; decision?: string; reason?: string }>;
  routing: { percent: number; releaseId: string | null }[];
  slots: Map<string, string>;
  mails: { subject: string; to: string[]; status?: ReleaseStatus }[];
  /** Describes workflows for findReleasesToReconcile (the test environment's client). */
  temporal?: Client;
  /** What the real beginRelease does when a release is in its way: run ReconcileReleases and wait. */
  reconcile?: () => Promise<ReconcileResult[] | undefined>;
}

export function fakeWorld(extra: Partial<FakeWorld> = {}): FakeWorld {
  return { rows: new Map(), routing: [], slots: new Map(), mails: [], ...extra };
}

/** The activities CanaryRelease and ReconcileReleases call, typed by the real ones: a renamed activity or a changed signature fails the type check. */
export type CanaryActivities = Pick<Activities, 'releaseDefaults' | 'beginRelease' | 'recordPhase' | 'offlineGate' | 'buildInferenceImage' | 'deploySlot'
  | 'removeSlot' | 'setRouting' | 'checkGuardrails' | 'judgeRelease' | 'promoteSlot' | 'finishRelease' | 'notifyReleaseOutcome'
  | 'findReleasesToReconcile' | 'finishReconciledRelease' | 'notifyReconciled'>;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function fakeActivities(scenario: Scenario, world: FakeWorld = fakeWorld()) {
  const calls: { name: string; args: unknown }[] = [];
  const record = (name: string, args: unknown) => { calls.push({ name, args }); };
  let guardrailCheck = 0;
  let judgeCall = 0;
  let mailAttempts = 0;
  let routeBackAttempts = 0;
  const { routing, slots } = world;
  const terminal = (phase: string) => (TERMINAL_PHASES as string[]).includes(phase);
  const busy = (own: string) => [...world.rows].find(([v, r]) => v !== own && !terminal(r.phase));

  const activities: CanaryActivities = {
    releaseDefaults: async () => ({ percent: 20, bake: '12h', interval: '30m', notify: ['oncall@localhost'], maxConsecutiveGuardrailFailures: 3, inconclusiveExtension: '6h' }),
    beginRelease: async (a) => {
      record('beginRelease', a);
      if (busy(a.input.version) && world.reconcile) await world.reconcile();
      const other = busy(a.input.version);
      if (other) throw ApplicationFailure.nonRetryable(`release ${other[0]} is in phase ${other[1].phase} and its workflow is still running`, 'ReleaseInFlight');
      if (!world.rows.has(a.input.version)) world.rows.set(a.input.version, { phase: 'starting', workflowId: a.workflowId, runId: a.runId });
    },
    recordPhase: async (a) => {
      record('recordPhase', a);
      const row = world.rows.get(a.version);
      if (row) row.phase = a.phase;
    },
    offlineGate: async (a: unknown): Promise<OfflineGateResult> => {
      record('offlineGate', a);
      const passed = scenario.offlinePassed ?? true;
      return { passed, reason: passed ? 'hit@20 +12% over main' : 'hit@20 -8% vs main', table: 'model  hit@20', numbers: {} };
    },
    buildInferenceImage: async (a: { version: string }): Promise<BuiltImage> => {
      record('buildInferenceImage', a);
      if (scenario.buildFails) throw ApplicationFailure.nonRetryable('image build failed: RUN exited with 7', 'BuildFailed');
      return { image: `marquee-inference:${a.version}`, imageId: 'sha256:abc', gitCommit: 'c0ffee', specHash: 'h', runtime: 'docker' };
    },
    deploySlot: async (a: { slot: string; version: string }) => { record('deploySlot', a); slots.set(a.slot, a.version); return { url: 'http://x', id: '1' }; },
    removeSlot: async (a: { slot: string }) => { record('removeSlot', a); return slots.delete(a.slot); },
    setRouting: async (a: { percent: number; releaseId: string | null }) => {
      record('setRouting', a);
      if (a.percent === 0 && routeBackAttempts++ < (scenario.routeBackFailures ?? 0)) throw new Error('gateway PUT /admin/routing: connect ECONNREFUSED 127.0.0.1:8082');
      routing.push({ percent: a.percent, releaseId: a.releaseId });
    },
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
    promoteSlot: async (a: { version: string }) => {
      record('promoteSlot', a);
      if (scenario.promoteMs) await sleep(scenario.promoteMs);
      if (scenario.promoteFails) throw ApplicationFailure.nonRetryable('main did not become healthy with spec h', 'DeployFailed');
      slots.set('main', a.version);
      slots.delete('nightly');
      return { mainReplicas: [], unnamed: [] };
    },
    finishRelease: async (a) => {
      record('finishRelease', a);
      const row = world.rows.get(a.version);
      if (row) Object.assign(row, { decision: a.decision, reason: a.reason });
    },
    notifyReleaseOutcome: async (a: { to: string[]; status: ReleaseStatus }) => {
      record('notifyReleaseOutcome', a);
      if (scenario.mailDown || mailAttempts++ < (scenario.mailFailures ?? 0)) throw new Error('connect ECONNREFUSED 127.0.0.1:2525');
      world.mails.push({ subject: a.status.decision ?? '', to: a.to, status: a.status });
      return { messageId: 'm' };
    },
    findReleasesToReconcile: async (): Promise<ReconcilePlan[]> => {
      record('findReleasesToReconcile', {});
      if (!world.temporal) throw new Error('fakeWorld: findReleasesToReconcile needs the test client');
      const unfinished = [...world.rows].filter(([, r]) => !terminal(r.phase)).map(([version, r]) => ({ version, workflowId: r.workflowId, runId: r.runId, phase: r.phase }));
      const states = await Promise.all(unfinished.map((u) => workflowState(world.temporal!, u.workflowId, u.runId)));
      const running = unfinished.filter((_, i) => states[i].status === 'RUNNING').map((u) => u.version);
      const last = routing.at(-1);
      const w = { routingReleaseId: last && last.percent > 0 ? last.releaseId : null, nightlyVersion: slots.get('nightly') ?? null, running };
      return unfinished.map((u, i) => reconcilePlan(u, states[i], w)).filter((p): p is ReconcilePlan => p !== null);
    },
    finishReconciledRelease: async (a) => {
      record('finishReconciledRelease', a);
      const row = world.rows.get(a.plan.version);
      if (!row || terminal(row.phase) || row.runId !== a.plan.runId) return { finished: false, phaseTimes: {} };
      Object.assign(row, { phase: RECONCILED_PHASE, decision: a.plan.decision, reason: a.plan.reason });
      return { finished: true, phaseTimes: {} };
    },
    notifyReconciled: async (a) => {
      record('notifyReconciled', a);
      world.mails.push({ subject: `${a.version}: ${a.decision} (reconciled)`, to: ['oncall@localhost'] });
      return { messageId: 'r' };
    },
  };
  return { activities, calls, mails: world.mails, routing, slots, world, names: () => calls.map((c) => c.name) };
}
