import { ApplicationFailure, CancellationScope, defineQuery, proxyActivities, setHandler } from '@temporalio/workflow';
import type { Activities } from '../activities/index.ts';
import { rootMessage } from './errors.ts';
import type { BackupManifest } from '../lib/backup/manifest.ts';

export interface DatabaseBackupInput {
  /** The database to back up; the worker's cfg.postgres.url names the default. */
  database?: string;
  /** The backups directory; cfg.backup.dir by default. */
  dir?: string;
  /** Apply retention after the backup (default true); keepLast / keepYoungerThan override the config. */
  retention?: boolean;
  keepLast?: number;
  keepYoungerThan?: string;
  /** E-mail when the backup fails (default true). Successes are not mailed: the schedule makes many. */
  notifyOnFailure?: boolean;
}

export interface DatabaseBackupResult {
  id: number;
  file: string;
  manifest: BackupManifest;
  /** Files retention removed after this backup. */
  deleted: string[];
}

export interface BackupStatus { phase: 'dump' | 'record' | 'retention' | 'done' | 'failed'; file?: string; id?: number; error?: string }

export const backupStatusQuery = defineQuery<BackupStatus>('status');

// pg_dump of a large database takes long; the heartbeat (every second) is what tells a dead worker apart.
const { dumpDatabase } = proxyActivities<Activities>({
  startToCloseTimeout: '6 hours',
  heartbeatTimeout: '30 seconds',
  retry: { maximumAttempts: 3, initialInterval: '10 seconds' },
});
const { recordBackup, applyRetention } = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  retry: { maximumAttempts: 5, initialInterval: '2 seconds' },
});
const { sendEmail } = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: { maximumAttempts: 3, initialInterval: '5 seconds' },
});

/** The innermost message of a failure chain (an activity's own message rather than "Activity task failed"). */

/**
 * DatabaseBackup: pg_dump (custom format, streamed, heartbeating) into the backups directory with
 * a manifest beside it, a row in `backups`, then retention. Run by the `marquee-backup` Schedule.
 */
export async function DatabaseBackup(input: DatabaseBackupInput = {}): Promise<DatabaseBackupResult> {
  const status: BackupStatus = { phase: 'dump' };
  setHandler(backupStatusQuery, () => status);
  try {
    const dump = await dumpDatabase({ database: input.database, dir: input.dir });
    status.file = dump.path;
    status.phase = 'record';
    const { id } = await recordBackup({ database: input.database, path: dump.path, manifest: dump.manifest });
    status.id = id;
    let deleted: string[] = [];
    if (input.retention !== false) {
      status.phase = 'retention';
      ({ deleted } = await applyRetention({ database: input.database, keepLast: input.keepLast, keepYoungerThan: input.keepYoungerThan, nowMs: Date.now() }));
    }
    status.phase = 'done';
    return { id, file: dump.path, manifest: dump.manifest, deleted };
  } catch (err) {
    const at = status.phase;
    status.phase = 'failed';
    status.error = rootMessage(err);
    if (input.notifyOnFailure !== false) {
      await CancellationScope.nonCancellable(() => sendEmail({
        subject: `[marquee] backup of ${input.database ?? 'the database'} FAILED`,
        text: `The DatabaseBackup workflow failed during "${at}":\n\n${status.error}\n`,
      })).catch(() => undefined);
    }
    throw ApplicationFailure.create({ message: `backup failed during ${at}: ${status.error}`, type: 'BackupFailed', nonRetryable: true, cause: err as Error });
  }
}
