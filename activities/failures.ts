import type { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';

/** The workflow that runs the current activity (always set for activities started by a workflow). */
export function workflowOf(ctx: Context): { workflowId: string; runId: string } {
  const e = ctx.info.workflowExecution;
  if (!e) throw ApplicationFailure.nonRetryable('this activity must run inside a workflow', 'NoWorkflow');
  return e;
}

/** A backup or restore problem no retry can fix (a corrupt or foreign file, a refused restore). */
export const invalid = (what: string, problems: string[], type = 'BackupInvalid'): ApplicationFailure =>
  ApplicationFailure.nonRetryable(`${what}: ${problems.join('; ')}`, type);
