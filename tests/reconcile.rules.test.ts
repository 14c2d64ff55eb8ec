import { describe, expect, it } from 'vitest';
import { closeDecision, formatReconcileEmail, isClosed, reconcilePlan, type UnfinishedRelease } from '../lib/release/reconcile.ts';

const row: UnfinishedRelease = { version: 'v7', workflowId: 'release-v7', runId: 'run-1', phase: 'baking' };
const quiet = { routingReleaseId: 'v7', nightlyVersion: 'v7', running: [] };

describe('reconcile rules (lib/release/reconcile.ts)', () => {
  it('leaves a running workflow to its own cleanup', () => {
    expect(reconcilePlan(row, { status: 'RUNNING' }, quiet)).toBeNull();
    expect(reconcilePlan(row, { status: 'CONTINUED_AS_NEW' }, quiet)).toBeNull();
  });

  it('records the close status as the decision and says why, for every way a run closes', () => {
    const cases = [
      ['TERMINATED', 'terminated'], ['FAILED', 'failed'], ['TIMED_OUT', 'timed-out'], ['CANCELLED', 'cancelled'],
      ['COMPLETED', 'completed'], ['NOT_FOUND', 'lost'],
    ] as const;
    for (const [status, decision] of cases) {
      expect(isClosed({ status })).toBe(true);
      expect(closeDecision({ status })).toBe(decision);
      const p = reconcilePlan(row, { status, closeReason: 'pressed Terminate' }, quiet)!;
      expect(p.decision).toBe(decision);
      expect(p.reason).toMatch(/^workflow release-v7 \(run run-1\) .* in phase baking: pressed Terminate; reconciled: traffic back to main, nightly removed$/);
      expect(p).toMatchObject({ routeBack: true, removeNightly: true });
    }
    expect(reconcilePlan(row, { status: 'NOT_FOUND' }, quiet)!.reason).toMatch(/is not known to Temporal/);
  });

  it('never touches the routing or nightly of another release whose workflow runs', () => {
    const p = reconcilePlan(row, { status: 'TERMINATED' }, { routingReleaseId: 'v8', nightlyVersion: 'v8', running: ['v8'] })!;
    expect(p).toMatchObject({ routeBack: false, removeNightly: false });
    // A leftover of a release that is itself closed is cleaned up.
    const q = reconcilePlan(row, { status: 'TERMINATED' }, { routingReleaseId: 'v6', nightlyVersion: 'v6', running: [] })!;
    expect(q).toMatchObject({ routeBack: true, removeNightly: true });
  });

  it('mails what closed and what was done', () => {
    const m = formatReconcileEmail({ version: 'v7', decision: 'terminated', reason: 'r', routedBack: true, nightlyRemoved: false, phaseTimes: { baking: 't1' } });
    expect(m.subject).toBe('[marquee] release v7: TERMINATED (reconciled)');
    expect(m.text).toMatch(/traffic back to main: yes/);
    expect(m.text).toMatch(/nightly removed: +left alone/);
    expect(m.text).toMatch(/t1 {2}baking/);
  });
});
