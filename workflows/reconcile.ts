import { defineQuery, proxyActivities, setHandler } from '@temporalio/workflow';
import type { Activities } from '../activities/index.ts';
import type { ReconcileResult } from '../lib/release/reconcile.ts';

/** What a reconcile in progress is doing, e.g. "traffic back to main for v3 (setRouting)". */
export interface ReconcileStatus { waitingFor?: string; done: ReconcileResult[] }
export const reconcileStatusQuery = defineQuery<ReconcileStatus>('status');

const look = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1s', maximumInterval: '30s', maximumAttempts: 10 },
});
// The cleanup never gives up (a gateway or mail server that is down for an hour must not leave
// traffic on a nightly nobody judges); the backoff is capped so that it resumes soon after.
const cleanup = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '2 minutes' },
});

/**
 * For every release whose row is unfinished while its workflow is closed (terminated, failed,
 * timed out): all traffic back to main, nightly removed, the row finished with the workflow's
 * close status, the outcome mailed — the abort's cleanup. Started by the `marquee-reconcile`
 * Schedule, by beginRelease when a release is in the way, and by `marquee abort`/`marquee restore`.
 */
export async function ReconcileReleases(input: { by?: string } = {}): Promise<ReconcileResult[]> {
  const status: ReconcileStatus = { done: [] };
  setHandler(reconcileStatusQuery, () => status);
  const by = `reconcile (${input?.by ?? 'schedule'})`;
  const step = async <T>(what: string, run: () => Promise<T>): Promise<T> => {
    status.waitingFor = what;
    try { return await run(); } finally { status.waitingFor = undefined; }
  };

  const plans = await step('the list of unfinished releases (findReleasesToReconcile)', () => look.findReleasesToReconcile());
  for (const plan of plans) {
    const v = plan.version;
    if (plan.routeBack) {
      await step(`all traffic back to main for ${v} (setRouting)`, () => cleanup.setRouting({ releaseId: null, nightlyVersion: null, percent: 0, by }));
    }
    if (plan.removeNightly) await step(`nightly removed for ${v} (removeSlot)`, () => cleanup.removeSlot({ slot: 'nightly' }));
    const done = { routedBack: plan.routeBack, nightlyRemoved: plan.removeNightly };
    const { finished, phaseTimes } = await step(`release ${v} recorded as ${plan.decision} (finishReconciledRelease)`,
      () => cleanup.finishReconciledRelease({ plan, ...done, by }));
    if (finished) {
      await step(`the outcome mail of ${v} (notifyReconciled)`,
        () => cleanup.notifyReconciled({ version: v, decision: plan.decision, reason: plan.reason, ...done, phaseTimes }));
    }
    status.done.push({ version: v, decision: plan.decision, reason: plan.reason, ...done, finished, mailed: finished });
  }
  return status.done;
}
