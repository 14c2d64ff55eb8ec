import { ApplicationFailure, CancellationScope, defineQuery, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities/index.ts';
import { rootMessage } from './errors.ts';
import type { RestorePlan, RestoreRecord } from '../activities/restore.ts';

export interface DatabaseRestoreInput {
  /** A backup id (row in `backups`) or the path of a backup file with its manifest beside it. */
  backup: number | string;
  /** Restore even while a release is baking. */
  force?: boolean;
  /** The live database; the worker's cfg.postgres.url names the default. */
  database?: string;
  /** The ingest service's admin base URL; http://127.0.0.1:<cfg.services.ingest.port> by default. */
  ingestUrl?: string;
  /** E-mail the outcome (default true). */
  notify?: boolean;
}

export type StepName = 'verify' | 'releases' | 'pause-ingest' | 'restore' | 'check' | 'switch' | 'carry-over' | 'cleanup' | 'resume-ingest' | 'email';

export interface RestoreStep { name: StepName; status: 'ok' | 'skipped' | 'failed'; at: string; detail?: unknown }

export interface RestoreStatus {
  restoreId: string;
  phase: StepName | 'start' | 'done';
  outcome: 'running' | 'succeeded' | 'failed';
  steps: RestoreStep[];
  plan?: Omit<RestorePlan, 'manifest'>;
  error?: string;
}

export interface DatabaseRestoreResult { restoreId: string; live: string; previous: string | null; backupId: number | null; file: string; steps: RestoreStep[] }

export const restoreStatusQuery = defineQuery<RestoreStatus>('status');

const retry = { maximumAttempts: 5, initialInterval: '2 seconds', maximumInterval: '30 seconds' };
// The long ones heartbeat every second: a dead worker is noticed within the heartbeat timeout and the
// activity is retried elsewhere (it starts over on its own new database).
const { verifyBackup, restoreInto } = proxyActivities<Activities>({ startToCloseTimeout: '6 hours', heartbeatTimeout: '15 seconds', retry });
const { verifyRestored, carryOver } = proxyActivities<Activities>({ startToCloseTimeout: '2 hours', retry });
const { checkReleases, pauseIngest, resumeIngest, switchDatabase, dropRestoreTarget, recordRestore } = proxyActivities<Activities>({ startToCloseTimeout: '5 minutes', retry });
const { sendEmail } = proxyActivities<Activities>({ startToCloseTimeout: '1 minute', retry: { maximumAttempts: 3, initialInterval: '5 seconds' } });

/**
 * DatabaseRestore: verify the backup (checksum, manifest) before anything changes; refuse while a
 * release bakes unless forced; pause ingest; pg_restore into a NEW database; check its row counts
 * against the manifest; switch it in by an atomic rename, keeping the previous database for undo;
 * carry over what Kafka cannot replay; resume ingest, which re-reads Kafka from the offsets in the
 * restored data; e-mail the outcome. Every step is recorded (restore_steps, and the `status` query).
 * Up to the switch the live database is untouched; a failure before it drops only the new database.
 */
export async function DatabaseRestore(input: DatabaseRestoreInput): Promise<DatabaseRestoreResult> {
  const restoreId = workflowInfo().workflowId;
  const status: RestoreStatus = { restoreId, phase: 'start', outcome: 'running', steps: [] };
  setHandler(restoreStatusQuery, () => status);
  const record = (r: Omit<RestoreRecord, 'restoreId' | 'database'>) => recordRestore({ restoreId, database: input.database, ...r });
  const step = async (name: StepName, state: RestoreStep['status'], detail?: unknown): Promise<void> => {
    status.steps.push({ name, status: state, at: new Date().toISOString(), detail });
    await record({ step: { name, status: state, detail } });
  };

  let plan: RestorePlan | undefined;
  let paused = false;
  let switched = false;
  let failure: unknown;
  let previous: string | null = null;
  try {
    await record({ start: { backup: String(input.backup), forced: input.force === true } });

    status.phase = 'verify';
    plan = await verifyBackup({ backup: input.backup, database: input.database });
    const { manifest, ...rest } = plan;
    status.plan = rest;
    await record({ plan });
    await step('verify', 'ok', { file: plan.file, sha256: manifest.sha256, sizeBytes: manifest.sizeBytes, createdAt: manifest.createdAt, ingestOffsets: manifest.ingestOffsets });

    status.phase = 'releases';
    const releases = await checkReleases({ database: input.database, force: input.force });
    await step('releases', 'ok', releases);

    status.phase = 'pause-ingest';
    const pause = await pauseIngest({ url: input.ingestUrl });
    paused = pause.paused;
    await step('pause-ingest', pause.paused ? 'ok' : 'skipped', pause);

    status.phase = 'restore';
    await step('restore', 'ok', await restoreInto(plan));

    status.phase = 'check';
    await step('check', 'ok', await verifyRestored(plan));

    status.phase = 'switch';
    const sw = await switchDatabase(plan);
    switched = true;
    previous = sw.previous;
    // From here on the records go to the restored database; carry the earlier ones over first.
    status.phase = 'carry-over';
    const carried = await carryOver(plan);
    await step('switch', 'ok', sw);
    await step('carry-over', 'ok', carried);
  } catch (err) {
    failure = err;
    status.error = rootMessage(err);
    await step(status.phase as StepName, 'failed', { error: status.error }).catch(() => undefined);
  }

  // Cleanup runs even when the workflow is cancelled.
  await CancellationScope.nonCancellable(async () => {
    if (failure && plan && !switched) {
      const p = plan;
      await dropRestoreTarget({ restoreId, target: p.target, live: p.live }).then(
        (d) => step('cleanup', 'ok', { ...d, database: p.target }),
        (err) => step('cleanup', 'failed', { error: rootMessage(err) })).catch(() => undefined);
    }
    if (paused) {
      await resumeIngest({ url: input.ingestUrl }).then(
        (r) => step('resume-ingest', r.resumed ? 'ok' : 'skipped', r),
        (err) => step('resume-ingest', 'failed', { error: rootMessage(err) })).catch(() => undefined);
    }
    status.outcome = failure ? 'failed' : 'succeeded';
    status.phase = 'done';
    await record({ finish: { status: status.outcome, error: status.error } }).catch(() => undefined);
    if (input.notify !== false) {
      const lines = status.steps.map((s) => `  ${s.at}  ${s.name.padEnd(14)} ${s.status}${s.status === 'failed' ? `: ${(s.detail as { error?: string })?.error ?? ''}` : ''}`);
      await sendEmail({
        subject: `[marquee] restore ${restoreId} ${failure ? 'FAILED' : 'succeeded'}`,
        text: [
          `Restore ${restoreId} of backup ${input.backup} into database ${plan?.live ?? input.database ?? '(live)'}: ${status.outcome}.`,
          failure ? `\nError: ${status.error}\n${switched ? '' : 'The live database was not changed.'}` : `\nThe previous database is kept as ${previous ?? '(none)'} for undo.`,
          '', 'Steps:', ...lines, '',
        ].join('\n'),
      }).then(
        (r) => { status.steps.push({ name: 'email', status: 'ok', at: new Date().toISOString(), detail: r }); },
        (err) => { status.steps.push({ name: 'email', status: 'failed', at: new Date().toISOString(), detail: { error: rootMessage(err) } }); });
    }
  });

  if (failure) {
    throw ApplicationFailure.create({ message: `restore ${restoreId} failed during ${status.steps.find((s) => s.status === 'failed')?.name ?? status.phase}: ${status.error}`, type: 'RestoreFailed', nonRetryable: true, cause: failure as Error });
  }
  return { restoreId, live: plan!.live, previous, backupId: plan!.backupId, file: plan!.file, steps: status.steps };
}
