/**
 * `marquee backup`, `marquee backups`, `marquee restore <id|file> [--force]`, `marquee schedules apply`.
 * Backup and restore run as workflows on the worker (`npm start` runs one); these commands start
 * them, show their progress from the activities' heartbeats and the workflow's status query, and
 * print the outcome.
 */
import { ScheduleAlreadyRunning, ScheduleOverlapPolicy, type Client, type WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { loadConfig, type Config } from '../lib/config.ts';
import { createPool } from '../lib/db.ts';
import { listBackups } from '../lib/backup/catalog.ts';
import { stamp } from '../lib/backup/names.ts';
import { BACKUP_SCHEDULE_ID, scheduleInterval } from '../lib/backup/schedule.ts';
import { connectClient } from '../lib/temporal.ts';
import { applyReconcileSchedule, runReconcile, sayReconciled } from './release.ts';
import type { DatabaseBackupInput, DatabaseBackupResult } from '../workflows/backup.ts';
import type { DatabaseRestoreResult, RestoreStatus } from '../workflows/restore.ts';

export const usage = {
  backup: 'backup',
  backups: 'backups [--all]',
  restore: 'restore <backup-id|file> [--force]',
  schedules: 'schedules apply',
};

const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(1)} MB`;

/** What the running activity last reported in its heartbeat, e.g. "restore 12.0 MB of 40.1 MB". */
async function progress(handle: WorkflowHandle): Promise<string | undefined> {
  const d = await handle.describe();
  for (const a of d.raw.pendingActivities ?? []) {
    const payload = a.heartbeatDetails?.payloads?.[0];
    const name = a.activityType?.name ?? 'activity';
    const attempt = (a.attempt ?? 1) > 1 ? ` (attempt ${a.attempt})` : '';
    if (!payload) return `${name}${attempt}`;
    const h = defaultPayloadConverter.fromPayload<{ phase?: string; bytes?: number; total?: number }>(payload);
    const of = h.total ? ` of ${mb(h.total)} (${Math.round((100 * (h.bytes ?? 0)) / h.total)}%)` : '';
    return `${h.phase ?? name}: ${mb(h.bytes ?? 0)}${of}${attempt}`;
  }
  return undefined;
}

async function warnWithoutWorker(client: Client, cfg: Config): Promise<void> {
  const r = await client.workflowService.describeTaskQueue({ namespace: cfg.temporal.namespace, taskQueue: { name: cfg.temporal.taskQueue } });
  if ((r.pollers ?? []).length === 0) console.error(`note: no worker polls task queue "${cfg.temporal.taskQueue}"; start one with \`npm start\` or \`npm run worker\``);
}

/** Waits for a workflow's result, printing progress lines while it runs (only when they change). */
async function follow<T>(handle: WorkflowHandle, onTick?: () => Promise<void>): Promise<T> {
  const result = handle.result() as Promise<T>;
  let done = false;
  void result.finally(() => { done = true; }).catch(() => undefined);
  let last = '';
  while (!done) {
    await Promise.race([result.catch(() => undefined), new Promise((r) => setTimeout(r, 1000))]);
    if (done) break;
    await onTick?.().catch(() => undefined);
    const p = await progress(handle).catch(() => undefined);
    if (p && p !== last) console.log(`  … ${p}`);
    last = p ?? last;
  }
  return result;
}

function cause(err: unknown): string {
  let e = err as { message?: string; cause?: unknown } | undefined;
  while (e && typeof e === 'object' && e.cause) e = e.cause as typeof e;
  return e?.message ?? String(err);
}

export async function backupCommand(args: string[]): Promise<number> {
  if (args.length) { console.error(`usage: marquee ${usage.backup}`); return 2; }
  const cfg = loadConfig();
  const client = await connectClient(cfg);
  try {
    await warnWithoutWorker(client, cfg);
    const input: DatabaseBackupInput = {};
    const handle = await client.workflow.start('DatabaseBackup', { taskQueue: cfg.temporal.taskQueue, workflowId: `marquee-backup-manual-${stamp(Date.now())}`, args: [input] });
    console.log(`backup: workflow ${handle.workflowId} started`);
    const r = await follow<DatabaseBackupResult>(handle);
    const rows = Object.values(r.manifest.rowCounts).reduce((a, b) => a + b, 0);
    console.log(`backup ${r.id}: ${r.file}\n  ${mb(r.manifest.sizeBytes)}, ${rows} rows, sha256 ${r.manifest.sha256}, taken ${r.manifest.createdAt} in ${(r.manifest.durationMs / 1000).toFixed(1)} s`);
    console.log(`  ingest offsets: ${r.manifest.ingestOffsets.map((o) => `${o.topic}/${o.partition}@${o.nextOffset}`).join(' ') || '(none)'}`);
    if (r.deleted.length) console.log(`  retention removed: ${r.deleted.join(', ')}`);
    return 0;
  } catch (err) {
    console.error(`backup failed: ${cause(err)}`);
    return 1;
  } finally {
    await client.connection.close();
  }
}

export async function backupsCommand(args: string[]): Promise<number> {
  const all = args.includes('--all');
  if (args.some((a) => a !== '--all')) { console.error(`usage: marquee ${usage.backups}`); return 2; }
  const pool = createPool(loadConfig(), { max: 1 });
  try {
    const rows = await listBackups(pool, { includeDeleted: all });
    if (rows.length === 0) { console.log('no backups yet; `marquee backup` makes one'); return 0; }
    console.log(['id'.padStart(5), 'taken (UTC)'.padEnd(20), 'size'.padStart(10), 'rows'.padStart(10), 'release'.padEnd(16), 'file'].join('  '));
    for (const b of rows) {
      const total = Object.values(b.rowCounts).reduce((a, n) => a + n, 0);
      console.log([String(b.id).padStart(5), b.createdAt.toISOString().slice(0, 19).replace('T', ' ').padEnd(20), mb(Number(b.sizeBytes)).padStart(10),
        String(total).padStart(10), (b.releaseId ?? '-').padEnd(16), b.file + (b.deletedAt ? '  (deleted)' : '')].join('  '));
    }
    return 0;
  } finally {
    await pool.end();
  }
}

export async function restoreCommand(args: string[]): Promise<number> {
  const force = args.includes('--force');
  const rest = args.filter((a) => a !== '--force');
  if (rest.length !== 1 || rest[0].startsWith('-')) { console.error(`usage: marquee ${usage.restore}`); return 2; }
  const backup = /^\d+$/.test(rest[0]) ? Number(rest[0]) : rest[0];
  const cfg = loadConfig();
  const client = await connectClient(cfg);
  try {
    await warnWithoutWorker(client, cfg);
    // A release whose workflow is closed but whose row is unfinished would make the restore refuse
    // ("a release is baking") with nothing the operator could abort: clean it up first.
    const reconciled = await runReconcile(cfg, client, 'marquee restore');
    if (reconciled === undefined) return 1;
    for (const r of reconciled) console.log(`release ${r.version}: its workflow had ${r.decision}; reconciled: ${sayReconciled(r)}`);
    const workflowId = `marquee-restore-${typeof backup === 'number' ? backup : 'file'}-${stamp(Date.now())}`;
    const handle = await client.workflow.start('DatabaseRestore', { taskQueue: cfg.temporal.taskQueue, workflowId, args: [{ backup, force }] });
    console.log(`restore: workflow ${workflowId} started`);
    let shown = 0;
    const showSteps = async () => {
      const s = await handle.query<RestoreStatus>('status');
      for (; shown < s.steps.length; shown++) {
        const st = s.steps[shown];
        const err = st.status === 'failed' ? `: ${(st.detail as { error?: string })?.error ?? ''}` : '';
        console.log(`  ${st.name.padEnd(14)} ${st.status}${err}`);
      }
    };
    try {
      const r = await follow<DatabaseRestoreResult>(handle, showSteps);
      await showSteps().catch(() => undefined);
      console.log(`restore done: ${r.live} now holds backup ${r.backupId ?? r.file}; the previous database is kept as ${r.previous ?? '(none)'}`);
      return 0;
    } catch (err) {
      await showSteps().catch(() => undefined);
      console.error(`restore failed: ${cause(err)}`);
      return 1;
    }
  } finally {
    await client.connection.close();
  }
}

export interface ApplySchedulesOptions {
  client?: Client;
  scheduleId?: string;
  taskQueue?: string;
  /** The input of each scheduled DatabaseBackup (tests point it at a scratch database). */
  backupInput?: DatabaseBackupInput;
}

/** Creates the backup Schedule from cfg.backup.schedule, or updates it to match; says which. */
export async function applySchedules(cfg: Config, opts: ApplySchedulesOptions = {}): Promise<{ scheduleId: string; interval: string; result: 'created' | 'updated' }> {
  const client = opts.client ?? await connectClient(cfg);
  const scheduleId = opts.scheduleId ?? BACKUP_SCHEDULE_ID;
  const interval = scheduleInterval(cfg.backup.schedule);
  const spec = { intervals: [{ every: interval }] };
  const action = {
    type: 'startWorkflow' as const,
    workflowType: 'DatabaseBackup',
    workflowId: scheduleId,
    taskQueue: opts.taskQueue ?? cfg.temporal.taskQueue,
    args: [opts.backupInput ?? {}],
  };
  // A backup still running when the next is due is left alone rather than doubled.
  const policies = { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 hour' };
  try {
    try {
      await client.schedule.create({ scheduleId, spec, action, policies, memo: { source: 'temporal.yaml backup.schedule' } });
      return { scheduleId, interval, result: 'created' };
    } catch (err) {
      if (!(err instanceof ScheduleAlreadyRunning)) throw err;
      await client.schedule.getHandle(scheduleId).update((prev) => ({ ...prev, spec, action, policies: { ...prev.policies, ...policies } }));
      return { scheduleId, interval, result: 'updated' };
    }
  } finally {
    if (!opts.client) await client.connection.close();
  }
}

/** Takes ["apply"] when registered as "schedules", or [] when registered as the grouped "schedules apply". */
export async function schedulesCommand(args: string[]): Promise<number> {
  const rest = args[0] === 'apply' ? args.slice(1) : args;
  if (rest.length !== 0) { console.error(`usage: marquee ${usage.schedules}`); return 2; }
  const cfg = loadConfig();
  const r = await applySchedules(cfg);
  console.log(`schedule ${r.scheduleId}: ${r.result}, DatabaseBackup every ${r.interval} on task queue ${cfg.temporal.taskQueue}`);
  const rec = await applyReconcileSchedule(cfg);
  console.log(`schedule ${rec.scheduleId}: ${rec.result}, ReconcileReleases every ${rec.interval} on task queue ${cfg.temporal.taskQueue}`);
  return 0;
}
