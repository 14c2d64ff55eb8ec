/**
 * Every activity the worker registers, made from the dependencies the worker builds once.
 * Workflows import this file for its types only: proxyActivities<Activities>.
 */
import { backupActivities } from './backup.ts';
import { containerActivities } from './containers.ts';
import type { ActivityDeps } from './deps.ts';
import { evaluationActivities } from './evaluation.ts';
import { notifyActivities } from './notify.ts';
import { ping } from './ping.ts';
import { reconcileActivities } from './reconcile.ts';
import { releaseActivities } from './release.ts';
import { restoreActivities } from './restore.ts';

export function createActivities(deps: ActivityDeps) {
  return {
    ping,
    ...backupActivities(deps),
    ...restoreActivities(deps),
    ...notifyActivities(deps),
    ...releaseActivities(deps),
    ...reconcileActivities(deps),
    ...containerActivities(deps),
    ...evaluationActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
export { createActivityDeps, type ActivityDeps } from './deps.ts';
