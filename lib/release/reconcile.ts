/**
 * Reconcile: the rules for a release whose `releases` row is unfinished while its workflow is
 * closed (terminated from the Temporal UI, failed, timed out). Such a row would keep traffic on a
 * nightly nobody judges and block every later release, so Marquee runs the abort's cleanup for it.
 * Pure code, shared by the ReconcileReleases workflow, its activities and the CLI.
 */

/** Temporal's execution status names (WorkflowExecutionStatusName), plus NOT_FOUND when Temporal has no such run. */
export type WorkflowStatusName =
  | 'RUNNING' | 'COMPLETED' | 'FAILED' | 'CANCELLED' | 'TERMINATED' | 'CONTINUED_AS_NEW' | 'TIMED_OUT' | 'PAUSED'
  | 'UNSPECIFIED' | 'UNKNOWN' | 'NOT_FOUND';

/** What Temporal says about one workflow run. */
export interface WorkflowState {
  status: WorkflowStatusName;
  closeTime?: string;
  /** The terminate reason, the failure's innermost message, or undefined when Temporal gives none. */
  closeReason?: string;
}

/** A `releases` row whose phase is not terminal. */
export interface UnfinishedRelease {
  version: string;
  workflowId: string;
  runId: string | null;
  phase: string;
}

/** What a reconcile does for one release; `decision` is what the row records (the workflow's close status). */
export interface ReconcilePlan extends UnfinishedRelease {
  decision: string;
  reason: string;
  workflow: WorkflowState;
  /** False when the routing belongs to another release whose workflow runs: it is left alone. */
  routeBack: boolean;
  /** False when nightly runs another release that is still in flight. */
  removeNightly: boolean;
}

export interface ReconcileResult {
  version: string;
  decision: string;
  reason: string;
  routedBack: boolean;
  nightlyRemoved: boolean;
  /** False when another reconcile finished the row first (it mailed, not this one). */
  finished: boolean;
  mailed: boolean;
}

/** The Temporal Schedule that reconciles periodically. */
export const RECONCILE_SCHEDULE_ID = 'marquee-reconcile';
/**
 * The id every on-demand reconcile on a task queue shares (one deployment per queue: a test's
 * queue and database never meet the real ones).
 */
export const reconcileWorkflowId = (taskQueue: string): string => `reconcile-${taskQueue}`;
/** How often the Schedule looks: a terminated release keeps nightly's share at most this long. */
export const RECONCILE_EVERY = '2m';

/** The phase a reconciled row ends in: its traffic went back to main and nightly went away, as in an abort. */
export const RECONCILED_PHASE = 'aborted';

const CLOSE_WORDS: Partial<Record<WorkflowStatusName, string>> = {
  COMPLETED: 'completed', FAILED: 'failed', CANCELLED: 'cancelled', TERMINATED: 'terminated', TIMED_OUT: 'timed-out',
  NOT_FOUND: 'lost',
};

/** Whether a run is closed for good. CONTINUED_AS_NEW hands on to a new run, so it is not (CanaryRelease never does it). */
export function isClosed(w: WorkflowState): boolean {
  return CLOSE_WORDS[w.status] !== undefined;
}

/** The word the row records for a closed run: terminated, failed, cancelled, timed-out, completed, lost. */
export function closeDecision(w: WorkflowState): string {
  return CLOSE_WORDS[w.status] ?? w.status.toLowerCase();
}

/** One line an operator reads: how the workflow closed, in which phase, and why. */
export function describeClose(row: UnfinishedRelease, w: WorkflowState): string {
  const run = row.runId ? ` (run ${row.runId})` : '';
  const how = w.status === 'NOT_FOUND'
    ? 'is not known to Temporal (retention expired, or another server)'
    : closeDecision(w);
  return `workflow ${row.workflowId}${run} ${how} in phase ${row.phase}${w.closeReason ? `: ${w.closeReason}` : ''}`;
}

/**
 * The plan for one unfinished release, or null while its workflow still runs (the workflow's
 * own cleanup is in charge then). `running` lists the versions whose workflows do run: their
 * routing and nightly are never touched.
 */
export function reconcilePlan(
  row: UnfinishedRelease, w: WorkflowState,
  world: { routingReleaseId: string | null; nightlyVersion: string | null; running: string[] },
): ReconcilePlan | null {
  if (!isClosed(w)) return null;
  const ownedByLive = (v: string | null) => v !== null && v !== row.version && world.running.includes(v);
  return {
    ...row,
    decision: closeDecision(w),
    reason: `${describeClose(row, w)}; reconciled: traffic back to main, nightly removed`,
    workflow: w,
    routeBack: !ownedByLive(world.routingReleaseId),
    removeNightly: !ownedByLive(world.nightlyVersion),
  };
}

/** The reconcile's mail: what closed, what Marquee did about it. */
export function formatReconcileEmail(r: { version: string; decision: string; reason: string; routedBack: boolean; nightlyRemoved: boolean; phaseTimes?: Record<string, string> }): { subject: string; text: string } {
  const lines = [
    `Release ${r.version}: ${r.decision.toUpperCase()} (reconciled)`,
    '',
    `Reason: ${r.reason}`,
    '',
    `Its workflow closed without its own cleanup, so Marquee ran the abort's cleanup:`,
    `  traffic back to main: ${r.routedBack ? 'yes' : 'left alone (the routing belongs to a running release)'}`,
    `  nightly removed:      ${r.nightlyRemoved ? 'yes' : 'left alone (it serves a running release)'}`,
    `  release recorded as:  phase ${RECONCILED_PHASE}, decision ${r.decision}`,
  ];
  if (r.phaseTimes && Object.keys(r.phaseTimes).length) {
    lines.push('', 'Timeline:');
    for (const [phase, at] of Object.entries(r.phaseTimes)) lines.push(`  ${at}  ${phase}`);
  }
  return { subject: `[marquee] release ${r.version}: ${r.decision.toUpperCase()} (reconciled)`, text: lines.join('\n') + '\n' };
}
