import {
  ApplicationFailure, CancellationScope, condition, defineQuery, defineSignal, defineUpdate, isCancellation,
  proxyActivities, setHandler, upsertSearchAttributes, workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.ts';
import { rootMessage } from './errors.ts';
import { releaseInputProblems, resolveReleaseInput, type ReleaseInput, type ResolvedReleaseInput } from '../lib/release/input.ts';
import type { ReleaseOutcome, ReleasePhase, ReleaseStatus } from '../lib/release/types.ts';

/** Operator input of the abort signal and the promote update; the Temporal CLI may send none. */
export interface OperatorNote { reason?: string; by?: string }
export const abortSignal = defineSignal<[OperatorNote]>('abort');
export const promoteUpdate = defineUpdate<string, [OperatorNote]>('promote');
export const statusQuery = defineQuery<ReleaseStatus>('status');

const quick = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1s', maximumInterval: '30s', maximumAttempts: 10 },
});
const long = proxyActivities<Activities>({
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: '1 minute',
  retry: { initialInterval: '2s', maximumInterval: '1 minute', maximumAttempts: 5 },
});
// The cleanup (traffic back to main, nightly removed, the outcome recorded and mailed) never gives
// up: a release that stopped retrying would leave users on a nightly nobody judges. The backoff is
// capped so that the cleanup resumes within two minutes of the gateway or mail server coming back.
// Changing retry options does not change the commands, so running releases replay unchanged.
const cleanup = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '2 minutes' },
});

/**
 * A canary release: offline gate, image build, nightly deploy, traffic split, a durable bake with
 * guardrail checks, the judge, then promote or abort — and whatever happens, traffic back to a
 * healthy main, nightly removed, the outcome recorded and e-mailed.
 */
export async function CanaryRelease(raw: ReleaseInput): Promise<ReleaseOutcome> {
  // Handlers first, so a query or signal that arrives with the first task is never refused.
  const status: ReleaseStatus = {
    version: String(raw?.version ?? ''), model: String(raw?.model ?? ''), percent: Number(raw?.percent ?? 0), phase: 'starting',
    phaseTimes: {}, guardrailChecks: 0, consecutiveGuardrailFailures: 0, extended: false,
  };
  let abortReason: string | undefined;
  let promoteEarly: string | undefined;
  const releaseScope = new CancellationScope();

  setHandler(statusQuery, () => status);
  setHandler(abortSignal, (arg: OperatorNote | undefined) => {
    const note = `aborted by ${arg?.by ?? 'operator'}: ${arg?.reason ?? 'no reason given'}`;
    // Once the promotion has begun, main may already run the new version: rolling back half a
    // promotion would be riskier than finishing it, so the abort is answered, not applied.
    if (status.decision === 'promoted' || status.phase === 'promoting') {
      status.abortNotApplied ??= `${note} — not applied: the promotion had begun, so it is finished (abort cannot undo a promotion; release the previous version to go back)`;
      return;
    }
    abortReason ??= note;
    // Ends the phase in hand at once (a build, a health wait, the bake timer).
    releaseScope.cancel();
  });
  setHandler(promoteUpdate, (arg: OperatorNote | undefined) => {
    promoteEarly = `promoted early by ${arg?.by ?? 'operator'}: ${arg?.reason ?? 'no reason given'}`;
    return `promotion of ${status.version} requested; the bake ends now`;
  }, {
    validator: (_arg: OperatorNote | undefined) => {
      if (status.phase !== 'baking') throw new Error(`promote is only possible while baking; release ${status.version} is ${status.phase}`);
    },
  });

  const problems = releaseInputProblems(raw);
  if (problems.length) throw ApplicationFailure.nonRetryable(`invalid release input: ${problems.join('; ')}`, 'InvalidReleaseInput');
  const input: ResolvedReleaseInput = resolveReleaseInput(raw, await quick.releaseDefaults());
  status.percent = input.percent;
  status.steps = input.steps;
  const { workflowId, runId } = workflowInfo();

  /**
   * The MarqueePhase search attribute: the phase, and for a release with several steps the step
   * while it is in flight (`baking 2/3 20%`), so the Temporal UI's list shows it. A one-step release
   * keeps the bare phase names (and the commands of runs from before steps).
   */
  const searchPhase = (phase: ReleasePhase): string =>
    input.steps.length > 1 && status.step && (phase === 'routing' || phase === 'baking' || phase === 'online-eval')
      ? `${phase} ${status.step}/${input.steps.length} ${status.percent}%` : phase;
  const enter = async (phase: ReleasePhase, via = quick) => {
    status.phase = phase;
    status.phaseTimes[phase] = new Date().toISOString();
    upsertSearchAttributes({ MarqueePhase: [searchPhase(phase)], MarqueeVersion: [input.version] });
    await via.recordPhase({ version: input.version, phase, at: status.phaseTimes[phase]! });
  };
  /** A cleanup step, retried until it succeeds; the status query names it meanwhile. */
  const waitFor = async <T>(what: string, step: () => Promise<T>): Promise<T> => {
    status.waitingFor = what;
    try { return await step(); } finally { status.waitingFor = undefined; }
  };
  /** The judge sees the window up to the bake's end (workflow time), so a retried judgement judges the same window. */
  const judge = (bakeEnd: number) => long.judgeRelease({ releaseId: input.version, asOf: new Date(bakeEnd).toISOString() });
  const decide = (decision: 'promoted' | 'aborted' | 'failed', reason: string) => {
    status.decision ??= decision;
    status.reason ??= reason;
  };

  await quick.beginRelease({ input, workflowId, runId });
  let failure: unknown;
  try {
    await releaseScope.run(async () => {
      await enter('offline-eval');
      status.offline = await long.offlineGate({ model: input.model });
      if (!status.offline.passed) return decide('aborted', `offline evaluation below the gate: ${status.offline.reason}`);

      await enter('building');
      status.image = await long.buildInferenceImage({ version: input.version, model: input.model });

      await enter('deploying');
      await long.deploySlot({ slot: 'nightly', version: input.version, model: input.model, image: status.image });

      // Progressive steps (Argo/Flagger style): each step routes its share, bakes, and is judged.
      // A release without `steps` has one step, so its commands are those of runs from before steps.
      for (let i = 0; i < input.steps.length; i++) {
        const last = i === input.steps.length - 1;
        status.step = i + 1;
        status.percent = input.steps[i];
        // The release id stays the same, so users already in nightly stay there (lib/routing.ts slotFor).
        await enter('routing');
        await quick.setRouting({ releaseId: input.version, nightlyVersion: input.version, percent: input.steps[i], by: workflowId });

        await enter('baking');
        let bakeEnd = await bake(input.bakeMs);

        await enter('online-eval');
        status.judge = await judge(bakeEnd);
        if (status.judge.verdict === 'Inconclusive' && !promoteEarly) {
          status.extended = true;
          await enter('baking');
          bakeEnd = await bake(input.inconclusiveExtensionMs);
          await enter('online-eval');
          status.judge = await judge(bakeEnd);
        }
        if (promoteEarly) return decide('promoted', promoteEarly);
        const at = input.steps.length > 1 ? ` at step ${i + 1} (${input.steps[i]}%)` : '';
        if (status.judge.verdict === 'Failed') return decide('aborted', `the judge says Failed${at}: ${status.judge.reason}`);
        if (status.judge.verdict === 'Inconclusive') return decide('aborted', `still Inconclusive${at} after extending the bake once: ${status.judge.reason}`);
        if (last) return decide('promoted', `the judge says Successful${at}: ${status.judge.reason}`);
      }
    });
  } catch (err) {
    if (isCancellation(err)) decide('aborted', abortReason ?? 'the workflow was cancelled');
    else {
      decide('failed', `failed in phase ${status.phase}: ${rootMessage(err)}`);
      failure = err;
    }
  }
  if (abortReason && status.decision !== 'promoted') { status.decision = 'aborted'; status.reason = abortReason; }

  // Whatever happened above (even a cancellation of the whole workflow), finish cleanly.
  await CancellationScope.nonCancellable(async () => {
    if (status.decision === 'promoted') {
      await waitFor('the promoting phase recorded (recordPhase)', () => enter('promoting', cleanup));
      try {
        await long.promoteSlot({ version: input.version, model: input.model, image: status.image!, releaseId: input.version, by: workflowId });
      } catch (err) {
        status.decision = 'failed';
        status.reason = `promotion failed: ${rootMessage(err)}`;
        failure = err;
      }
    }
    if (status.decision !== 'promoted') {
      await waitFor('the aborting phase recorded (recordPhase)', () => enter('aborting', cleanup));
      // Argo-style abort: all traffic back to the stable version, then the canary goes away.
      await waitFor('all traffic back to main (setRouting through the gateway admin API)',
        () => cleanup.setRouting({ releaseId: null, nightlyVersion: null, percent: 0, by: workflowId }));
      await waitFor('nightly removed (removeSlot)', () => cleanup.removeSlot({ slot: 'nightly' }));
    }
    if (status.abortNotApplied) {
      // A promotion that failed after the abort arrived was rolled back above: say that instead.
      if (status.decision !== 'promoted') status.abortNotApplied = status.abortNotApplied.replace(/ — not applied: .*$/, ' — arrived during the promotion, which failed and was rolled back');
      status.reason = `${status.reason}; ${status.abortNotApplied}`;
    }
    await waitFor(`the ${status.decision} phase recorded (recordPhase)`, () => enter(status.decision!, cleanup));
    await waitFor('the outcome recorded in releases (finishRelease)',
      () => cleanup.finishRelease({ version: input.version, decision: status.decision!, reason: status.reason!, status }));
    try {
      await waitFor(`the outcome mail to ${input.notify.join(', ')} (notifyReleaseOutcome)`, () => cleanup.notifyReleaseOutcome({ to: input.notify, status }));
    } catch (err) {
      // Only a non-retryable mail error gets here (and runs recorded before mail was retried for
      // ever): the release is decided and recorded, so a mail must not turn it into a failure.
      status.mail = `not sent: ${rootMessage(err)}`;
    }
  });
  if (failure) throw ApplicationFailure.nonRetryable(status.reason!, 'ReleaseFailed');
  return { version: input.version, decision: status.decision!, reason: status.reason!, status };

  /**
   * The durable bake: ends at its deadline, on abort (scope cancelled), on promote, or on
   * guardrails. Returns the workflow time at which it ended.
   */
  async function bake(durationMs: number): Promise<number> {
    const endsAt = Date.now() + durationMs;
    status.bakeEndsAt = new Date(endsAt).toISOString();
    while (Date.now() < endsAt && !promoteEarly) {
      await condition(() => promoteEarly !== undefined, Math.min(input.intervalMs, endsAt - Date.now()));
      if (promoteEarly) return Date.now();
      const check = await quick.checkGuardrails({ releaseId: input.version });
      status.guardrailChecks++;
      status.lastGuardrail = check;
      status.consecutiveGuardrailFailures = check.ok ? 0 : status.consecutiveGuardrailFailures + 1;
      if (status.consecutiveGuardrailFailures >= input.maxConsecutiveGuardrailFailures) {
        abortReason = `aborted automatically: guardrails failed ${status.consecutiveGuardrailFailures} times in a row (${check.violations.join('; ')})`;
        releaseScope.cancel();
        await condition(() => false); // the cancellation ends this wait
      }
    }
    return Math.min(Date.now(), endsAt);
  }
}
