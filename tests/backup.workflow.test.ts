/**
 * DatabaseBackup and DatabaseRestore end to end on the real servers: Temporal (dev server), Postgres,
 * Kafka, the real ingest consumer, a real SMTP server on loopback, and the worker as a child process
 * (workers/main.ts) so that it can be killed in the middle of a restore. The "live" database is a
 * scratch database named in the workflow input; the topic and task queue are the test's own.
 */
import { copyFileSync, mkdtempSync, rmSync, statSync, truncateSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import type { Server } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WorkflowFailedError, type Client, type WorkflowHandle } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils.js';
import { bundleWorkflowCode, DefaultLogger, Runtime, Worker, type WorkflowBundle } from '@temporalio/worker';
import { catchMail, type MailCatcher } from '../testkit/mail.ts';
import { applySchedules } from '../cli/backup.ts';
import { loadConfig } from '../lib/config.ts';
import { createPool, type Pool } from '../lib/db.ts';
import { listen, serviceApp } from '../lib/http.ts';
import { ensureTopic, produceLines } from '../lib/kafka.ts';
import { manifestPath } from '../lib/backup/manifest.ts';
import { quoteIdent } from '../lib/backup/names.ts';
import { connectClient } from '../lib/temporal.ts';
import { Ingest } from '../services/ingest/consumer.ts';
import { generateLines } from '../services/simulator/offline.ts';
import { workflowsPath } from '../workers/worker.ts';
import type { DatabaseBackupResult } from '../workflows/backup.ts';
import type { DatabaseRestoreInput, DatabaseRestoreResult, RestoreStatus } from '../workflows/restore.ts';
import { scratchDatabase } from './support/db.ts';
import { actualRows, deleteTopic, expectedRows, ingestedCount, waitForIngested } from './support/ingest.ts';
import { committedHistory, recordHistory } from './support/histories.ts';
import { requireStack } from './support/servers.ts';
import { freePort } from '../testkit/net.ts';
import { alive, spawnTs, stop, type Proc } from '../testkit/processes.ts';

Runtime.install({ logger: new DefaultLogger('WARN'), telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' } } } });

const cfg = loadConfig();
const tag = randomBytes(3).toString('hex');
const taskQueue = `test-backup-${tag}`;
const topic = `backup-test-${tag}`;
const dir = mkdtempSync(path.join(os.tmpdir(), 'marquee-backups-'));

let client: Client;
let admin: Pool;
let smtp: MailCatcher | undefined;
let smtpPort: number;
/** An address where no ingest listens: the restore records that and goes on. */
let noIngest: string;
const mails: string[] = [];
let worker: Proc | undefined;
let replayBundle: WorkflowBundle;
/** Databases made by the tests (scratch, previous, restore targets), dropped at the end. */
const prefixes: string[] = [];
const savedHistories: Record<string, unknown> = {};

async function startWorker(): Promise<Proc> {
  const p = spawnTs('worker', 'workers/main.ts', {
    MARQUEE_TEMPORAL_TASKQUEUE: taskQueue, MARQUEE_SMTP_PORT: String(smtpPort), MARQUEE_SMTP_HOST: '127.0.0.1', MARQUEE_SMTP_SECURE: 'false',
    MARQUEE_BACKUP_DIR: dir, MARQUEE_KAFKA_QUIET: '1',
  });
  // Ready when the worker process polls the queue (describeTaskQueue lists pollers of the last minutes,
  // so a fresh log line from this process is the sign).
  const deadline = Date.now() + 90_000;
  while (!p.output.join('').includes(`task queue ${taskQueue}`)) {
    if (!alive(p)) throw new Error(`worker exited:\n${p.output.join('')}`);
    if (Date.now() > deadline) throw new Error(`worker not ready:\n${p.output.join('')}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return p;
}

async function liveDb(prefix: string) {
  const db = await scratchDatabase(prefix);
  // The restore's switch ends this pool's connections; they must not crash the test process.
  db.pool.on('error', () => undefined);
  prefixes.push(db.name);
  return db;
}

async function databases(prefix: string): Promise<string[]> {
  return (await admin.query<{ datname: string }>(`SELECT datname FROM pg_database WHERE datname LIKE $1 || '%' ORDER BY 1`, [prefix])).rows.map((r) => r.datname);
}

async function restoreTargets(): Promise<string[]> {
  return databases('marquee_restore_');
}

const backup = (database: string, id = `backup-${tag}-${randomBytes(2).toString('hex')}`) =>
  client.workflow.start('DatabaseBackup', { taskQueue, workflowId: id, args: [{ database, dir }] });

const restore = (input: DatabaseRestoreInput, id = `restore-${tag}-${randomBytes(2).toString('hex')}`): Promise<WorkflowHandle> =>
  client.workflow.start('DatabaseRestore', { taskQueue, workflowId: id, args: [input] });

function subjects(): string[] {
  return mails.map((m) => /^Subject: (.*(?:\r?\n[ \t].*)*)/m.exec(m)?.[1].replace(/\r?\n[ \t]/g, ' ') ?? '');
}

async function mailArrives(pattern: RegExp, timeoutMs = 30_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const i = subjects().findIndex((s) => pattern.test(s));
    // Bodies come quoted-printable: undo the soft line breaks so text can be matched.
    if (i >= 0) return mails[i].replace(/=\r?\n/g, '').replace(/=3D/g, '=');
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no mail matching ${pattern}; got: ${subjects().join(' | ')}`);
}

async function failureOf(handle: WorkflowHandle): Promise<string> {
  try {
    await handle.result();
  } catch (err) {
    expect(err).toBeInstanceOf(WorkflowFailedError);
    return (err as Error & { cause?: Error }).cause?.message ?? '';
  }
  throw new Error('the workflow did not fail');
}

/** The real ingest consumer on the live database, with the admin routes of services/ingest/main.ts. */
async function startIngest(database: string) {
  const pool = createPool(cfg, { database, max: 6, applicationName: 'marquee-ingest-test' });
  pool.on('error', () => undefined);
  const ingest = new Ingest(cfg, pool, { topic, groupId: `g-${database}`, log: () => undefined });
  const calls: string[] = [];
  const app = serviceApp({ registry: ingest.registry, health: () => ({ ...ingest.health(), service: 'ingest' }) });
  app.post('/admin/pause', (_req, res) => { calls.push('pause'); ingest.pause(); res.json({ paused: true }); });
  app.post('/admin/resume', async (_req, res) => { calls.push('resume'); await ingest.resume(); res.json({ paused: false }); });
  const port = await freePort();
  const server: Server = await listen(app, port);
  await ingest.start();
  return {
    url: `http://127.0.0.1:${port}`, calls, pool,
    async stop() { await ingest.stop(); server.close(); await pool.end(); },
  };
}

describe('DatabaseBackup and DatabaseRestore workflows', () => {
  beforeAll(async () => {
    await requireStack(cfg, 'temporal', 'kafka');
    admin = createPool(cfg, { database: 'postgres', max: 1 });
    smtpPort = await freePort();
    noIngest = `http://127.0.0.1:${await freePort()}`;
    smtp = await catchMail(smtpPort, { into: mails });
    client = await connectClient(cfg);
    worker = await startWorker();
    await ensureTopic(cfg, topic, 4);
    replayBundle = await bundleWorkflowCode({ workflowsPath, logger: new DefaultLogger('WARN') });
  });

  afterAll(async () => {
    await stop(worker);
    await client?.connection.close();
    await smtp?.close();
    for (const p of prefixes) for (const name of await databases(p)) await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
    await admin?.end();
    await deleteTopic(cfg, topic);
    rmSync(dir, { recursive: true, force: true });
  });

  it('backup, more events, restore: every event ends up in the database exactly once', async () => {
    const live = await liveDb('bkwf');
    const first = generateLines({ seed: 801, count: 20_000, malformedFraction: 0.01 }).lines;
    const second = generateLines({ seed: 802, count: 20_000, malformedFraction: 0.01 }).lines;
    const third = generateLines({ seed: 803, count: 5_000 }).lines;
    const ingest = await startIngest(live.name);
    try {
      await produceLines(cfg, first, { topic });
      await waitForIngested(live.pool, topic, first.length);

      const b = await backup(live.name);
      const made = await b.result() as DatabaseBackupResult;
      savedHistories['backup'] = await b.fetchHistory();
      expect(made.manifest.ingestOffsets.reduce((n, o) => n + o.nextOffset, 0)).toBe(first.length);
      expect(statSync(made.file).size).toBe(made.manifest.sizeBytes);
      const { rows: [row] } = await live.pool.query('SELECT file, sha256, ingest_offsets, row_counts, workflow_id FROM backups WHERE id = $1', [made.id]);
      expect(row).toMatchObject({ file: made.file, sha256: made.manifest.sha256, workflow_id: b.workflowId });
      expect(row.row_counts.watches).toBe(expectedRows(first).watches);

      await produceLines(cfg, second, { topic });
      await waitForIngested(live.pool, topic, first.length + second.length);
      expect(await actualRows(live.pool)).toEqual(expectedRows([...first, ...second]));

      const r = await restore({ backup: made.id, database: live.name, ingestUrl: ingest.url });
      // More traffic while ingest is paused for the restore: it must land in the restored database
      // (not the old one), and its arrival makes ingest notice the older stored offsets and seek back.
      const pausedBy = Date.now() + 60_000;
      while (!(await r.query<RestoreStatus>('status')).steps.some((s) => s.name === 'pause-ingest')) {
        if (Date.now() > pausedBy) throw new Error('the restore never paused ingest');
        await new Promise((res) => setTimeout(res, 50));
      }
      await produceLines(cfg, third, { topic });
      const done = await r.result() as DatabaseRestoreResult;
      savedHistories['restore'] = await r.fetchHistory();
      expect(done.steps.map((s) => `${s.name}:${s.status}`)).toEqual([
        'verify:ok', 'releases:ok', 'pause-ingest:ok', 'restore:ok', 'check:ok', 'switch:ok', 'carry-over:ok', 'resume-ingest:ok', 'email:ok']);
      expect(ingest.calls).toEqual(['pause', 'resume']);

      // Ingest resumed from the offsets in the restored data and re-read the second batch from Kafka.
      const all = [...first, ...second, ...third];
      await waitForIngested(live.pool, topic, all.length);
      await new Promise((res) => setTimeout(res, 1500));
      expect(await ingestedCount(live.pool, topic)).toBe(all.length);
      expect(await actualRows(live.pool)).toEqual(expectedRows(all));

      // The previous database is kept for undo, with what the live one held before the restore.
      expect(done.previous).toMatch(new RegExp(`^${live.name}_prev_`));
      const prev = createPool(cfg, { database: done.previous!, max: 1 });
      expect(await ingestedCount(prev, topic)).toBe(first.length + second.length);
      await prev.end();
      // The record of the restore (and of the backup) survived the switch.
      const steps = await live.pool.query('SELECT step, status FROM restore_steps WHERE restore_id = $1 ORDER BY at', [r.workflowId]);
      expect(steps.rows.map((s) => s.step)).toEqual(expect.arrayContaining(['verify', 'restore', 'check', 'switch', 'carry-over', 'resume-ingest']));
      const rec = await live.pool.query('SELECT status, backup_id, previous_database FROM restores WHERE id = $1', [r.workflowId]);
      expect(rec.rows).toEqual([{ status: 'succeeded', backup_id: made.id, previous_database: done.previous }]);
      expect((await live.pool.query('SELECT count(*)::int AS n FROM backups WHERE id = $1', [made.id])).rows[0].n).toBe(1);
      expect(await restoreTargets()).toEqual([]);
      // The restore analysed what it restored: the planner has statistics from the first query on.
      const unanalysed = await live.pool.query(`SELECT relname FROM pg_stat_user_tables
        WHERE relname IN ('served_recommendations', 'watches', 'user_assignments', 'ingest_offsets') AND last_analyze IS NULL`);
      expect(unanalysed.rows).toEqual([]);

      const mail = await mailArrives(new RegExp(`restore ${r.workflowId} succeeded`));
      expect(mail).toContain(`kept as ${done.previous}`);
    } finally {
      await ingest.stop();
    }
  });

  it('a truncated file, a wrong checksum and a foreign file are refused before anything changes', async () => {
    const live = await liveDb('bkbad');
    await live.pool.query(`INSERT INTO ingest_offsets (topic, kafka_partition, next_offset) VALUES ('x', 0, 5)`);
    await live.pool.query(`INSERT INTO watches (user_id, movie_id, first_at, last_at, minutes, max_minute) SELECT g, 'm', now(), now(), 1, 1 FROM generate_series(1, 5000) g`);
    const made = await (await backup(live.name)).result() as DatabaseBackupResult;
    await live.pool.query(`DELETE FROM watches WHERE user_id > 4000`);
    const original = `${made.file}.orig`;
    copyFileSync(made.file, original);
    const before = await actualRows(live.pool);
    const dbsBefore = await databases(live.name);

    const refused = async (input: DatabaseRestoreInput, message: RegExp) => {
      const h = await restore({ ...input, database: live.name, ingestUrl: noIngest });
      expect(await failureOf(h)).toMatch(message);
      const hist = await h.fetchHistory();
      // Refused on the first attempt (non-retryable) and nothing after verifyBackup was scheduled.
      const scheduled = hist.events!.filter((e) => e.activityTaskScheduledEventAttributes).map((e) => e.activityTaskScheduledEventAttributes!.activityType!.name);
      expect(scheduled).not.toContain('pauseIngest');
      expect(scheduled).not.toContain('restoreInto');
      expect(await actualRows(live.pool)).toEqual(before);
      expect(await databases(live.name)).toEqual(dbsBefore);
      expect(await restoreTargets()).toEqual([]);
      const rec = await live.pool.query('SELECT status, error FROM restores WHERE id = $1', [h.workflowId]);
      expect(rec.rows[0].status).toBe('failed');
      await mailArrives(new RegExp(`restore ${h.workflowId} FAILED`));
    };

    truncateSync(made.file, Math.floor(made.manifest.sizeBytes / 2));
    await refused({ backup: made.id }, new RegExp(`failed during verify: backup ${made.id} refused .*the file is truncated: ${Math.floor(made.manifest.sizeBytes / 2)} of ${made.manifest.sizeBytes} bytes`));

    copyFileSync(original, made.file);
    const fd = openSync(made.file, 'r+');
    writeSync(fd, Buffer.from([0x5a, 0x5a, 0x5a]), 0, 3, Math.floor(made.manifest.sizeBytes / 2));
    closeSync(fd);
    await refused({ backup: made.id }, /failed during verify: .*checksum mismatch: the file's sha256 is [0-9a-f]{64}, the manifest says/);

    const foreign = path.join(dir, 'foreign.dump');
    writeFileSync(foreign, randomBytes(4096));
    await refused({ backup: foreign }, /no manifest beside .*foreign\.dump: not a Marquee backup/);
    // A real manifest copied beside another file is caught too.
    copyFileSync(manifestPath(made.file), manifestPath(foreign));
    await refused({ backup: foreign }, /a foreign manifest/);

    // The intact file still restores (the refusals were about the files, not the database).
    copyFileSync(original, made.file);
    const ok = await restore({ backup: made.id, database: live.name, ingestUrl: noIngest, notify: false });
    const done = await ok.result() as DatabaseRestoreResult;
    expect(done.steps.find((s) => s.name === 'pause-ingest')?.status).toBe('skipped');
    expect((await live.pool.query('SELECT count(*)::int AS n FROM watches')).rows[0].n).toBe(5000);
  });

  it('refuses while a release bakes; forced, it survives the worker being killed mid-restore and never shows a half state', async () => {
    const live = await liveDb('bkkill');
    // Enough data that pg_restore takes a few seconds: a window to kill the worker in.
    await live.pool.query(`INSERT INTO served_recommendations (served_at, user_id, slot, movie_ids, latency_ms)
      SELECT now(), g, 'main', ARRAY[md5(g::text), md5((g + 1)::text), md5((g + 2)::text)], g % 97 FROM generate_series(1, 400000) g`);
    await live.pool.query(`INSERT INTO ingest_offsets (topic, kafka_partition, next_offset) VALUES ('k', 0, 400000)`);
    const made = await (await backup(live.name)).result() as DatabaseBackupResult;
    const backupCount = 400_000;
    // After the backup: fewer rows and a release that is baking.
    await live.pool.query(`DELETE FROM served_recommendations WHERE id > 300000`);
    await live.pool.query(`INSERT INTO releases (id, model_spec, phase) VALUES ('v-bake-${tag}', 'models/x.json', 'baking')`);
    const beforeCount = 300_000;

    const refusedHandle = await restore({ backup: made.id, database: live.name, ingestUrl: noIngest, notify: false });
    expect(await failureOf(refusedHandle)).toMatch(new RegExp(`release v-bake-${tag} \\(baking\\) is baking.*--force`));
    expect(await restoreTargets()).toEqual([]);

    // Watch the live database all along: it must always hold the old rows or the restored ones.
    const seen = new Set<number>();
    let watching = true;
    const watcher = (async () => {
      const p = createPool(cfg, { database: live.name, max: 1 });
      p.on('error', () => undefined);
      while (watching) {
        try { seen.add(Number((await p.query('SELECT count(*)::int AS n FROM served_recommendations')).rows[0].n)); } catch { /* terminated at the switch */ }
        await new Promise((r) => setTimeout(r, 50));
      }
      await p.end();
    })();

    const h = await restore({ backup: made.id, database: live.name, ingestUrl: noIngest, force: true });
    // Kill the worker (SIGKILL: no cleanup at all) once pg_restore is streaming.
    const deadline = Date.now() + 60_000;
    for (;;) {
      const d = await h.describe();
      const a = d.raw.pendingActivities?.find((x) => x.activityType?.name === 'restoreInto' && x.heartbeatDetails?.payloads?.length);
      if (a) break;
      if (Date.now() > deadline) throw new Error('restoreInto never started');
      await new Promise((r) => setTimeout(r, 100));
    }
    worker!.kill('SIGKILL');
    await new Promise((r) => worker!.once('exit', r));
    expect(seen).toEqual(new Set([beforeCount]));
    worker = await startWorker();
    const done = await h.result() as DatabaseRestoreResult;
    watching = false;
    await watcher;

    const restoreSteps = done.steps.map((s) => s.name);
    expect(restoreSteps).toEqual(['verify', 'releases', 'pause-ingest', 'restore', 'check', 'switch', 'carry-over', 'email']);
    expect(done.steps.find((s) => s.name === 'releases')?.detail).toMatchObject({ forced: true });
    const hist = await h.fetchHistory();
    const attempts = hist.events!.filter((e) => e.activityTaskStartedEventAttributes).map((e) => e.activityTaskStartedEventAttributes!.attempt);
    expect(Math.max(...attempts.map(Number))).toBeGreaterThan(1);
    expect((await live.pool.query('SELECT count(*)::int AS n FROM served_recommendations')).rows[0].n).toBe(backupCount);
    expect([...seen].every((n) => n === beforeCount || n === backupCount)).toBe(true);
    expect(seen.has(backupCount)).toBe(true);
    expect(await restoreTargets()).toEqual([]);
    await mailArrives(new RegExp(`restore ${h.workflowId} succeeded`));
  });

  it('`schedules apply` creates the backup Schedule from the config, updates it on a second run, and it runs DatabaseBackup', async () => {
    const live = await liveDb('bksched');
    const scheduleId = `test-backup-schedule-${tag}`;
    const opts = { client, scheduleId, taskQueue, backupInput: { database: live.name, dir } };
    const handle = client.schedule.getHandle(scheduleId);
    try {
      expect(await applySchedules(cfg, opts)).toEqual({ scheduleId, interval: '6h', result: 'created' });
      const shown = await handle.describe();
      expect(shown.spec.intervals?.[0].every).toBe(6 * 3_600_000);
      expect(shown.action).toMatchObject({ type: 'startWorkflow', workflowType: 'DatabaseBackup', taskQueue });
      expect(await applySchedules({ ...cfg, backup: { ...cfg.backup, schedule: 'every 3h' } }, opts)).toMatchObject({ result: 'updated', interval: '3h' });
      expect((await handle.describe()).spec.intervals?.[0].every).toBe(3 * 3_600_000);

      await handle.trigger();
      const deadline = Date.now() + 60_000;
      let workflowId: string | undefined;
      while (!workflowId && Date.now() < deadline) {
        workflowId = (await handle.describe()).info.recentActions[0]?.action.workflow.workflowId;
        if (!workflowId) await new Promise((r) => setTimeout(r, 200));
      }
      const r = await client.workflow.getHandle(workflowId!).result() as DatabaseBackupResult;
      expect(r.manifest.database).toBe(live.name);
      expect((await live.pool.query('SELECT count(*)::int AS n FROM backups')).rows[0].n).toBe(1);
    } finally {
      await handle.delete().catch(() => undefined);
    }
  });

  it('replays the histories of the backup and restore runs, and the committed ones, against the current code', async () => {
    for (const name of ['backup', 'restore'] as const) {
      const fresh = savedHistories[name];
      expect(fresh, `the ${name} run of the first test`).toBeDefined();
      const json = historyToJSON(fresh as Parameters<typeof historyToJSON>[0]);
      await Worker.runReplayHistory({ workflowBundle: replayBundle }, JSON.parse(json));
      recordHistory(name, json);
      const committed = committedHistory(name);
      expect(committed.events[0].workflowExecutionStartedEventAttributes.workflowType.name).toBe(name === 'backup' ? 'DatabaseBackup' : 'DatabaseRestore');
      await Worker.runReplayHistory({ workflowBundle: replayBundle }, committed);
      // The replayer really compares: an activity the code does not schedule must fail the replay.
      const tampered = JSON.parse(json);
      tampered.events.find((e: any) => e.eventType === 'EVENT_TYPE_ACTIVITY_TASK_SCHEDULED').activityTaskScheduledEventAttributes.activityType.name = 'somethingElse';
      await expect(Worker.runReplayHistory({ workflowBundle: replayBundle }, tampered)).rejects.toThrow(/nondetermin/i);
    }
  });
});
