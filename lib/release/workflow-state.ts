/**
 * What Temporal says about a release's workflow run: its status and, once closed, why (the
 * terminate reason or the failure message, read from the close event alone). Used by the
 * reconcile activity and by `marquee status`/`marquee abort`.
 */
import { WorkflowIdConflictPolicy } from '@temporalio/common';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { reconcileWorkflowId, type ReconcileResult, type WorkflowState, type WorkflowStatusName } from './reconcile.ts';

/** The innermost message of a failure chain: the activity's own error, not "Activity task failed". */
interface FailureLike { message?: string | null; cause?: FailureLike | null }
function rootFailureMessage(f: FailureLike | null | undefined): string | undefined {
  let message: string | undefined;
  for (let e = f; e; e = e.cause) if (e.message) message = e.message;
  return message;
}

/** temporal.api.enums.v1.HistoryEventFilterType.HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT: the close event alone, however long the history. */
const CLOSE_EVENT_ONLY = 2;

export async function workflowState(client: Client, workflowId: string, runId?: string | null): Promise<WorkflowState> {
  let d;
  try {
    d = await client.workflow.getHandle(workflowId, runId ?? undefined).describe();
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return { status: 'NOT_FOUND' };
    throw err;
  }
  const status = d.status.name as WorkflowStatusName;
  const state: WorkflowState = { status, closeTime: d.closeTime?.toISOString() };
  if (status === 'RUNNING') return state;
  const history = await client.workflowService.getWorkflowExecutionHistory({
    namespace: client.options.namespace,
    execution: { workflowId, runId: d.runId },
    historyEventFilterType: CLOSE_EVENT_ONLY,
  });
  const e = history.history?.events?.[0];
  state.closeReason = e?.workflowExecutionTerminatedEventAttributes?.reason
    || rootFailureMessage(e?.workflowExecutionFailedEventAttributes?.failure)
    || undefined;
  if (status === 'TIMED_OUT') state.closeReason ??= 'the workflow execution timed out';
  return state;
}

/**
 * Runs the ReconcileReleases workflow and waits for its answer, at most `waitMs` (undefined when it
 * is still at work then: a cleanup step being retried, or no worker). Every caller (beginRelease,
 * the CLI) shares one workflow id, so two at once wait for the same run instead of racing.
 */
export async function reconcileNow(client: Client, opts: { taskQueue: string; by: string; waitMs?: number }): Promise<ReconcileResult[] | undefined> {
  const handle = await client.workflow.start('ReconcileReleases', {
    taskQueue: opts.taskQueue, workflowId: reconcileWorkflowId(opts.taskQueue), args: [{ by: opts.by }],
    workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
  });
  const result = handle.result() as Promise<ReconcileResult[]>;
  if (opts.waitMs === undefined) return result;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((r) => { timer = setTimeout(() => r(undefined), opts.waitMs); });
  try {
    return await Promise.race([result, late]);
  } finally {
    clearTimeout(timer);
    result.catch(() => undefined);
  }
}
