/**
 * The side effects of the DatabaseBackup and DatabaseRestore workflows. Every activity here may
 * run twice (a worker dies, Temporal retries it), so each one checks what is already done first:
 * files are written under a temporary name and renamed, rows are upserted by a natural key, the
 * restore fills a database named by its workflow id, and the switch looks before it renames.
 * Problems no retry can fix (a corrupt or foreign file, a refused restore) are non-retryable.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createReadStream, createWriteStream, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { durationMs, loadConfig, projectRoot, type Config } from '../lib/config.ts';
import { createPool, migrate, withTransaction, type Pool } from '../lib/db.ts';
import { getBackup } from '../lib/backup/catalog.ts';
import { HashCounter, sha256File } from '../lib/backup/checksum.ts';
import { MANIFEST_FORMAT, manifestPath, manifestProblems, parseManifest, rowCountProblems, type BackupManifest } from '../lib/backup/manifest.ts';
import { assertDatabaseName, backupFileName, previousName, quoteIdent, RESTORE_PREFIX, restoreComment, restoreTargetName } from '../lib/backup/names.ts';
import { expiredBackups } from '../lib/backup/retention.ts';
import { TERMINAL_PHASES } from '../lib/release/types.ts';

// ---- settings ----------------------------------------------------------------------------------

/** The database the services use: the one named in cfg.postgres.url unless the workflow names another (tests). */
export function liveDatabase(cfg: Config, override?: string): string {
  return assertDatabaseName(override ?? decodeURIComponent(new URL(cfg.postgres.url).pathname.slice(1) || 'postgres'));
}

export function backupDir(cfg: Config, override?: string): string {
  return path.resolve(projectRoot, override ?? cfg.backup.dir);
}

export function ingestAdminUrl(cfg: Config, override?: string): string {
  return override ?? `http://127.0.0.1:${cfg.services.ingest.port}`;
}

export function databaseUrl(cfg: Config, database: string): string {
  const u = new URL(cfg.postgres.url);
  u.pathname = `/${database}`;
  return u.toString();
}

/** A short-lived pool; a connection ended under it (the restore's switch terminates them) must not crash the worker. */
function pool(cfg: Config, database: string, max = 2): Pool {
  const p = createPool(cfg, { database, max, applicationName: 'marquee-backup' });
  p.on('error', () => undefined);
  return p;
}

async function withPool<T>(database: string, fn: (p: Pool, cfg: Config) => Promise<T>, max = 2): Promise<T> {
  const cfg = loadConfig();
  const p = pool(cfg, database, max);
  try {
    return await fn(p, cfg);
  } finally {
    await p.end();
  }
}

/** Administrative work (create, drop, rename databases) runs on the maintenance database, never on the ones it changes. */
const withAdmin = <T>(fn: (p: Pool, cfg: Config) => Promise<T>): Promise<T> => withPool('postgres', fn, 1);

/** The workflow that runs the current activity (always set for activities started by a workflow). */
function workflowOf(ctx: Context): { workflowId: string; runId: string } {
  const e = ctx.info.workflowExecution;
  if (!e) throw ApplicationFailure.nonRetryable('this activity must run inside a workflow', 'NoWorkflow');
  return e;
}

function heartbeatEvery(ms: number, details: () => unknown): () => void {
  const ctx = Context.current();
  ctx.heartbeat(details());
  const timer = setInterval(() => ctx.heartbeat(details()), ms);
  return () => clearInterval(timer);
}

/**
 * Runs a Postgres client tool with its stdin fed from `stdin` and its stdout piped into `stdout`
 * (both optional); resolves when it exited 0 and every pipe is flushed, else rejects with its stderr.
 */
async function runTool(cmd: string, args: string[], opts: { stdin?: NodeJS.ReadableStream; stdout?: NodeJS.WritableStream[]; signal?: AbortSignal } = {}): Promise<void> {
  const child = spawn(cmd, args, { stdio: [opts.stdin ? 'pipe' : 'ignore', opts.stdout ? 'pipe' : 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => { stderr = (stderr + c.toString()).slice(-8000); });
  const onAbort = () => child.kill('SIGTERM');
  opts.signal?.addEventListener('abort', onAbort);
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve(code));
  });
  // A pipe error (e.g. the tool died and stdin broke) is reported through the exit code and stderr.
  const pipes: Promise<unknown>[] = [];
  if (opts.stdin) pipes.push(pipeline(opts.stdin, child.stdin!).catch((err: Error) => { stderr += `\n(input: ${err.message})`; child.kill('SIGTERM'); }));
  if (opts.stdout) pipes.push(pipeline(child.stdout!, ...(opts.stdout as [NodeJS.WritableStream])));
  try {
    const [code] = await Promise.all([exited, ...pipes]);
    if (code !== 0) throw new Error(`${cmd} exited with ${code}: ${stderr.trim() || '(no output)'}`);
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
}

let dumpVersion: string | undefined;
const pgDumpVersion = (): string => (dumpVersion ??= execFileSync('pg_dump', ['--version']).toString().trim());

async function tableCounts(client: pg.PoolClient | Pool): Promise<Record<string, number>> {
  const { rows } = await client.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 1`);
  const counts: Record<string, number> = {};
  for (const { name } of rows) {
    const r = await client.query<{ n: number }>(`SELECT count(*)::bigint AS n FROM public."${name.replace(/"/g, '""')}"`);
    counts[name] = Number(r.rows[0].n);
  }
  return counts;
}

const invalid = (what: string, problems: string[], type = 'BackupInvalid'): ApplicationFailure =>
  ApplicationFailure.nonRetryable(`${what}: ${problems.join('; ')}`, type);

// ---- backup ------------------------------------------------------------------------------------

export interface DumpInput {
  /** The database to back up; defaults to the one in cfg.postgres.url. */
  database?: string;
  /** The backups directory; defaults to cfg.backup.dir. */
  dir?: string;
}

export interface DumpResult { path: string; manifest: BackupManifest }

/**
 * pg_dump in custom format, streamed through a hash into `<file>.partial` and renamed when complete,
 * with the manifest beside it. The row counts, ingest offsets and release come from the very
 * snapshot pg_dump reads (an exported snapshot held open for the whole dump), so they describe
 * exactly the data in the file. The name comes from the run and the activity's first scheduling
 * time, so a retry rewrites the same file, and a finished one is returned as it is.
 */
export async function dumpDatabase(input: DumpInput = {}): Promise<DumpResult> {
  const ctx = Context.current();
  const { workflowId, runId } = workflowOf(ctx);
  const cfg = loadConfig();
  const database = liveDatabase(cfg, input.database);
  const dir = backupDir(cfg, input.dir);
  mkdirSync(dir, { recursive: true });
  const name = backupFileName(database, ctx.info.scheduledTimestampMs, runId);
  const file = path.join(dir, name);

  if (existsSync(file) && existsSync(manifestPath(file))) {
    const manifest = parseManifest(readFileSync(manifestPath(file), 'utf8'));
    const facts = await sha256File(file);
    if (manifestProblems(manifest, { name, ...facts }).length === 0) return { path: file, manifest };
  }

  const started = Date.now();
  const db = pool(cfg, database, 1);
  const client = await db.connect();
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const { rows: [snap] } = await client.query<{ snapshot: string; at: Date }>('SELECT pg_export_snapshot() AS snapshot, now() AS at');
    const counter = new HashCounter();
    const partial = `${file}.partial`;
    const stop = heartbeatEvery(1000, () => ({ phase: 'dump', file: name, bytes: counter.bytes }));
    const failed = new AbortController();
    try {
      const dump = runTool('pg_dump', ['--format=custom', `--snapshot=${snap.snapshot}`, `--dbname=${databaseUrl(cfg, database)}`], {
        stdout: [counter, createWriteStream(partial)],
        signal: AbortSignal.any([ctx.cancellationSignal, failed.signal]),
      });
      dump.catch(() => undefined);
      // While pg_dump streams, the same snapshot yields the facts for the manifest.
      const offsets = await client.query<{ topic: string; partition: number; nextOffset: number }>(
        'SELECT topic, kafka_partition AS partition, next_offset AS "nextOffset" FROM ingest_offsets ORDER BY topic, kafka_partition');
      const release = await client.query<{ mainVersion: string | null; releaseId: string | null }>(
        'SELECT main_version AS "mainVersion", release_id AS "releaseId" FROM routing_state WHERE id = 1');
      const schema = await client.query<{ v: number }>('SELECT coalesce(max(version), 0)::int AS v FROM schema_migrations');
      const rowCounts = await tableCounts(client);
      await dump;
      // Durable before it gets its final name: a crash leaves either no file or a whole one.
      const fh = await open(partial, 'r+');
      await fh.sync();
      await fh.close();
      const manifest: BackupManifest = {
        format: MANIFEST_FORMAT,
        file: name,
        database,
        createdAt: snap.at.toISOString(),
        sizeBytes: counter.bytes,
        sha256: counter.digest(),
        rowCounts,
        ingestOffsets: offsets.rows.map((o) => ({ topic: o.topic, partition: Number(o.partition), nextOffset: Number(o.nextOffset) })),
        release: release.rows[0] ?? { mainVersion: null, releaseId: null },
        schemaVersion: schema.rows[0].v,
        pgDumpVersion: pgDumpVersion(),
        durationMs: Date.now() - started,
        workflow: { workflowId, runId },
      };
      renameSync(partial, file);
      const tmp = `${manifestPath(file)}.partial`;
      writeFileSync(tmp, JSON.stringify(manifest, null, 2) + '\n');
      renameSync(tmp, manifestPath(file));
      return { path: file, manifest };
    } catch (err) {
      failed.abort();
      rmSync(partial, { force: true });
      throw err;
    } finally {
      stop();
    }
  } finally {
    await client.query('ROLLBACK').catch(() => undefined);
    client.release();
    await db.end();
  }
}


/** The backups row for a dump, upserted by file so a retry (or a re-run on the same file) leaves one row. */
export async function recordBackup(input: { database?: string; path: string; manifest: BackupManifest }): Promise<{ id: number }> {
  const m = input.manifest;
  return withPool(liveDatabase(loadConfig(), input.database), async (p) => {
    const { rows } = await p.query<{ id: number }>(
      `INSERT INTO backups (file, created_at, size_bytes, sha256, ingest_offsets, row_counts, release_id, manifest, source_database, workflow_id, run_id)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
       ON CONFLICT (file) DO UPDATE SET created_at = EXCLUDED.created_at, size_bytes = EXCLUDED.size_bytes, sha256 = EXCLUDED.sha256,
         ingest_offsets = EXCLUDED.ingest_offsets, row_counts = EXCLUDED.row_counts, release_id = EXCLUDED.release_id,
         manifest = EXCLUDED.manifest, source_database = EXCLUDED.source_database, workflow_id = EXCLUDED.workflow_id,
         run_id = EXCLUDED.run_id, deleted_at = NULL
       RETURNING id`,
      [input.path, m.createdAt, m.sizeBytes, m.sha256, JSON.stringify(m.ingestOffsets), JSON.stringify(m.rowCounts),
        m.release.mainVersion, JSON.stringify(m), m.database, m.workflow?.workflowId ?? null, m.workflow?.runId ?? null]);
    return { id: Number(rows[0].id) };
  });
}

export interface RetentionInput {
  database?: string;
  keepLast?: number;
  keepYoungerThan?: string;
  /** The workflow's clock, so a replayed decision is the same one. */
  nowMs: number;
}

/** Deletes the backup files retention lets go (cfg.backup.keepLast / keepYoungerThan) and marks their rows deleted. */
export async function applyRetention(input: RetentionInput): Promise<{ deleted: string[]; kept: number }> {
  const cfg = loadConfig();
  const keepLast = input.keepLast ?? cfg.backup.keepLast;
  const keepMs = durationMs(input.keepYoungerThan ?? cfg.backup.keepYoungerThan);
  return withPool(liveDatabase(cfg, input.database), async (p) => {
    const { rows } = await p.query<{ id: number; file: string; createdAt: Date }>(
      'SELECT id, file, created_at AS "createdAt" FROM backups WHERE deleted_at IS NULL');
    const all = rows.map((r) => ({ id: Number(r.id), file: r.file, createdAtMs: r.createdAt.getTime() }));
    const expired = expiredBackups(all, input.nowMs, keepLast, keepMs);
    for (const b of expired) {
      rmSync(b.file, { force: true });
      rmSync(manifestPath(b.file), { force: true });
      await p.query('UPDATE backups SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL', [b.id]);
    }
    return { deleted: expired.map((b) => b.file), kept: all.length - expired.length };
  });
}

// ---- restore -----------------------------------------------------------------------------------

/** Everything the later restore steps need, decided once by verifyBackup and kept in the workflow history. */
export interface RestorePlan {
  restoreId: string;
  /** The run, so a later restore reusing a workflow id can never pass for this one at the switch. */
  runId: string;
  live: string;
  target: string;
  previous: string;
  backupId: number | null;
  file: string;
  manifest: BackupManifest;
}

export interface VerifyInput {
  /** A backup id (row in `backups` of the live database) or the path of a backup file. */
  backup: number | string;
  database?: string;
}

/**
 * Checks the backup before anything changes: the row, the manifest beside the file, the file's
 * size and sha256, and that pg_restore can read its table of contents. Any problem is final.
 */
export async function verifyBackup(input: VerifyInput): Promise<RestorePlan> {
  const ctx = Context.current();
  const { workflowId: restoreId, runId } = workflowOf(ctx);
  const cfg = loadConfig();
  const live = liveDatabase(cfg, input.database);
  const label = `backup ${input.backup}`;
  let file: string;
  let backupId: number | null = null;
  let row: { sizeBytes: number; sha256: string; file: string } | undefined;
  if (typeof input.backup === 'number' || /^\d+$/.test(input.backup)) {
    backupId = Number(input.backup);
    const b = await withPool(live, (p) => getBackup(p, backupId!));
    if (!b) throw invalid(`${label} refused`, [`no backup with id ${backupId} in database ${live}`], 'BackupNotFound');
    if (b.deletedAt) throw invalid(`${label} refused`, [`it was deleted by retention at ${b.deletedAt.toISOString()}`], 'BackupNotFound');
    file = b.file;
    row = { sizeBytes: Number(b.sizeBytes), sha256: b.sha256, file: b.file };
  } else {
    file = path.resolve(input.backup);
  }
  if (!existsSync(file)) throw invalid(`${label} refused`, [`the file ${file} does not exist`], 'BackupNotFound');
  if (!existsSync(manifestPath(file))) throw invalid(`${label} refused`, [`no manifest beside ${file}: not a Marquee backup (a foreign or incomplete file)`]);
  let manifest: BackupManifest;
  try {
    manifest = parseManifest(readFileSync(manifestPath(file), 'utf8'));
  } catch (err) {
    throw invalid(`${label} refused`, [(err as Error).message]);
  }
  const total = statSync(file).size;
  let read = 0;
  const stop = heartbeatEvery(1000, () => ({ phase: 'checksum', bytes: read, total }));
  let facts: { sha256: string; sizeBytes: number };
  try {
    facts = await sha256File(file, (n) => { read = n; });
  } finally {
    stop();
  }
  const problems = manifestProblems(manifest, { name: path.basename(file), ...facts }, row);
  if (problems.length) throw invalid(`${label} refused (${file})`, problems);
  try {
    await runTool('pg_restore', ['--list', file], { stdout: [createWriteStream('/dev/null')] });
  } catch (err) {
    throw invalid(`${label} refused (${file})`, [`pg_restore cannot read it: ${(err as Error).message}`]);
  }
  return { restoreId, runId, live, target: restoreTargetName(restoreId), previous: previousName(live, Date.now()), backupId, file, manifest };
}

/** Phases after which a release is no longer baking (the canary's own list); any other phase means a canary is in flight. */
export const TERMINAL_RELEASE_PHASES: readonly string[] = TERMINAL_PHASES;

/** Refuses (non-retryable) while a release is baking, unless forced; says which releases it saw either way. */
export async function checkReleases(input: { database?: string; force?: boolean }): Promise<{ baking: { id: string; phase: string }[]; forced: boolean }> {
  const baking = await withPool(liveDatabase(loadConfig(), input.database), async (p) => (await p.query<{ id: string; phase: string }>(
    'SELECT id, phase FROM releases WHERE phase <> ALL($1::text[]) ORDER BY started_at', [TERMINAL_RELEASE_PHASES])).rows);
  if (baking.length && !input.force) {
    throw ApplicationFailure.nonRetryable(
      `restore refused: release ${baking.map((r) => `${r.id} (${r.phase})`).join(', ')} is baking; wait for it to end, abort it, or restore with --force`,
      'ReleaseBaking');
  }
  return { baking, forced: baking.length > 0 };
}

async function ingestAdmin(url: string, action: 'pause' | 'resume'): Promise<{ ok: boolean; detail: string }> {
  let res: Response;
  try {
    res = await fetch(`${url}/admin/${action}`, { method: 'POST', signal: AbortSignal.timeout(5000) });
  } catch (err) {
    const code = (err as { cause?: { code?: string } }).cause?.code;
    // Nothing listening: ingest is not running, so there is nothing to pause (or resume).
    if (code === 'ECONNREFUSED') return { ok: false, detail: `ingest is not running at ${url} (connection refused)` };
    throw new Error(`ingest ${action} at ${url} failed: ${(err as Error).message}`);
  }
  const body = await res.text();
  if (!res.ok) throw new Error(`ingest ${action} at ${url} answered ${res.status}: ${body.slice(0, 200)}`);
  return { ok: true, detail: `ingest at ${url}: ${body.slice(0, 200)}` };
}

/** Stops ingest reading Kafka while the database is swapped; "not running" is recorded, not an error. */
export async function pauseIngest(input: { url?: string } = {}): Promise<{ paused: boolean; detail: string }> {
  const r = await ingestAdmin(ingestAdminUrl(loadConfig(), input.url), 'pause');
  return { paused: r.ok, detail: r.detail };
}

export async function resumeIngest(input: { url?: string } = {}): Promise<{ resumed: boolean; detail: string }> {
  const r = await ingestAdmin(ingestAdminUrl(loadConfig(), input.url), 'resume');
  return { resumed: r.ok, detail: r.detail };
}

async function databaseExists(admin: Pool, name: string): Promise<boolean> {
  return (await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount === 1;
}

async function databaseComment(admin: Pool, name: string): Promise<string | null> {
  const { rows } = await admin.query<{ c: string | null }>(
    `SELECT shobj_description(oid, 'pg_database') AS c FROM pg_database WHERE datname = $1`, [name]);
  return rows[0]?.c ?? null;
}

/**
 * pg_restore into the plan's new database, fed from the file through a byte counter so the
 * heartbeat carries progress. A retry drops what an earlier attempt left and starts over; the
 * live database is not touched.
 */
export async function restoreInto(plan: RestorePlan): Promise<{ bytes: number; durationMs: number }> {
  const ctx = Context.current();
  const cfg = loadConfig();
  if (!plan.target.startsWith(RESTORE_PREFIX) || plan.target === plan.live) throw ApplicationFailure.nonRetryable(`refusing to restore into ${plan.target}`, 'RestorePlanInvalid');
  const started = Date.now();
  await withAdmin(async (a) => {
    await a.query(`DROP DATABASE IF EXISTS ${quoteIdent(plan.target)} WITH (FORCE)`);
    await a.query(`CREATE DATABASE ${quoteIdent(plan.target)} TEMPLATE template0`);
    await a.query(`COMMENT ON DATABASE ${quoteIdent(plan.target)} IS ${pg.escapeLiteral(`${restoreComment(plan.restoreId, plan.runId)} (filling)`)}`);
  });
  const counter = new HashCounter();
  const stop = heartbeatEvery(1000, () => ({ phase: 'restore', bytes: counter.bytes, total: plan.manifest.sizeBytes }));
  try {
    const input = createReadStream(plan.file, { highWaterMark: 1 << 20 }).pipe(counter);
    await runTool('pg_restore', ['--exit-on-error', '--no-owner', `--dbname=${databaseUrl(cfg, plan.target)}`], { stdin: input, signal: ctx.cancellationSignal });
  } finally {
    stop();
  }
  return { bytes: counter.bytes, durationMs: Date.now() - started };
}

/**
 * The restored database must hold exactly the manifest's rows per table; then it is migrated to
 * the current schema (an old backup may predate migrations) and marked ready for the switch.
 */
export async function verifyRestored(plan: RestorePlan): Promise<{ rowCounts: Record<string, number>; migrated: string[] }> {
  const cfg = loadConfig();
  const p = pool(cfg, plan.target, 1);
  let rowCounts: Record<string, number>;
  let migrated: string[];
  try {
    rowCounts = await tableCounts(p);
    const problems = rowCountProblems(plan.manifest.rowCounts, rowCounts);
    if (problems.length) throw invalid(`restored database ${plan.target} does not match the manifest of ${plan.manifest.file}`, problems, 'RestoreMismatch');
    migrated = await migrate(p);
  } finally {
    await p.end();
  }
  await withAdmin((a) => a.query(`COMMENT ON DATABASE ${quoteIdent(plan.target)} IS ${pg.escapeLiteral(restoreComment(plan.restoreId, plan.runId))}`));
  return { rowCounts, migrated };
}

/**
 * The switch: in ONE transaction the live database is renamed to the plan's "previous" name (kept
 * for undo) and the restored one takes the live name. Services' connections are terminated first;
 * their pools reconnect by name and land on the restored data. Renames are transactional in
 * Postgres and a connection being set up re-checks the name after the lock, so every client sees
 * either the old or the new database, never a half state. Idempotent: the restore's comment on
 * the live database tells a retry that the switch already happened.
 */
export async function switchDatabase(plan: RestorePlan): Promise<{ previous: string | null; alreadyDone: boolean; attempts: number }> {
  return withAdmin(async (a) => {
    const comment = restoreComment(plan.restoreId, plan.runId);
    if (!(await databaseExists(a, plan.target))) {
      if (await databaseComment(a, plan.live) === comment) return { previous: plan.previous, alreadyDone: true, attempts: 0 };
      throw ApplicationFailure.nonRetryable(`the restored database ${plan.target} is gone and ${plan.live} is not the restored one; nothing was switched`, 'RestoreSwitchFailed');
    }
    if (await databaseComment(a, plan.target) !== comment) {
      throw ApplicationFailure.nonRetryable(`${plan.target} is not marked ready for restore ${plan.restoreId}; nothing was switched`, 'RestoreSwitchFailed');
    }
    const liveExists = await databaseExists(a, plan.live);
    if (liveExists && await databaseExists(a, plan.previous)) {
      throw ApplicationFailure.nonRetryable(`${plan.previous} already exists; nothing was switched`, 'RestoreSwitchFailed');
    }
    const client = await a.connect();
    try {
      // A client reconnecting between the terminate and the rename makes the rename fail ("being
      // accessed by other users"); terminate again and retry, briefly.
      for (let attempt = 1; ; attempt++) {
        try {
          await client.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ANY($1::text[]) AND pid <> pg_backend_pid()`, [[plan.live, plan.target]]);
          await withTransaction(client, async (c) => {
            if (liveExists) await c.query(`ALTER DATABASE ${quoteIdent(plan.live)} RENAME TO ${quoteIdent(plan.previous)}`);
            await c.query(`ALTER DATABASE ${quoteIdent(plan.target)} RENAME TO ${quoteIdent(plan.live)}`);
          });
          return { previous: liveExists ? plan.previous : null, alreadyDone: false, attempts: attempt };
        } catch (err) {
          if ((err as { code?: string }).code !== '55006' || attempt >= 20) throw err;
          Context.current().heartbeat({ phase: 'switch', attempt });
          await new Promise((r) => setTimeout(r, 100 * attempt));
        }
      }
    } finally {
      client.release();
    }
  });
}

/**
 * Records that never came from Kafka, so a restore could not replay them: backups and restores
 * (the system's own bookkeeping), releases, routing and the gateway's served history. They are
 * copied from the previous database into the restored one: history rows past the restored ones,
 * state rows upserted. Safe to repeat.
 */
export const CARRY_OVER: { table: string; key: string[]; mode: 'upsert' | 'append' | 'missing' }[] = [
  { table: 'backups', key: ['file'], mode: 'upsert' },
  { table: 'restores', key: ['id'], mode: 'upsert' },
  { table: 'restore_steps', key: ['restore_id', 'step'], mode: 'upsert' },
  { table: 'releases', key: ['id'], mode: 'upsert' },
  { table: 'routing_state', key: ['id'], mode: 'upsert' },
  { table: 'routing_changes', key: ['id'], mode: 'append' },
  { table: 'user_assignments', key: ['release_id', 'user_id'], mode: 'missing' },
  { table: 'served_recommendations', key: ['id'], mode: 'append' },
];

export async function carryOver(plan: RestorePlan): Promise<{ copied: Record<string, number> }> {
  const cfg = loadConfig();
  const exists = await withAdmin((a) => databaseExists(a, plan.previous));
  if (!exists) return { copied: {} };
  const from = pool(cfg, plan.previous, 1);
  const to = pool(cfg, plan.live, 1);
  const copied: Record<string, number> = {};
  const src = await from.connect();
  const dst = await to.connect();
  try {
    for (const t of CARRY_OVER) {
      const cols = async (c: pg.PoolClient) => (await c.query<{ column_name: string }>(
        `SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position`, [t.table])).rows.map((r) => r.column_name);
      const dstCols = await cols(dst);
      const srcCols = new Set(await cols(src));
      const shared = dstCols.filter((c) => srcCols.has(c));
      if (shared.length === 0 || !t.key.every((k) => srcCols.has(k))) continue;
      const list = shared.map((c) => `"${c}"`).join(', ');
      let where = '';
      if (t.mode === 'append') {
        const { rows } = await dst.query<{ m: number }>(`SELECT coalesce(max(id), 0)::bigint AS m FROM "${t.table}"`);
        where = `WHERE id > ${Number(rows[0].m)}`;
      }
      copied[t.table] = await withTransaction(dst, async (c) => {
        await c.query(`CREATE TEMP TABLE carry (LIKE "${t.table}" INCLUDING DEFAULTS) ON COMMIT DROP`);
        await pipeline(
          src.query(copyTo(`COPY (SELECT ${list} FROM "${t.table}" ${where}) TO STDOUT`)),
          c.query(copyFrom(`COPY carry (${list}) FROM STDIN`)),
        );
        const keys = t.key.map((k) => `"${k}"`).join(', ');
        const update = shared.filter((col) => !t.key.includes(col)).map((col) => `"${col}" = EXCLUDED."${col}"`).join(', ');
        const conflict = t.mode === 'upsert' && update ? `ON CONFLICT (${keys}) DO UPDATE SET ${update}` : `ON CONFLICT (${keys}) DO NOTHING`;
        const r = await c.query(`INSERT INTO "${t.table}" (${list}) SELECT ${list} FROM carry ${conflict}`);
        // Rows came with their ids: move the sequence past them, or the next insert would collide.
        const seq = shared.includes('id') ? (await c.query<{ s: string | null }>(`SELECT pg_get_serial_sequence($1, 'id') AS s`, [t.table])).rows[0].s : null;
        if (seq) await c.query(`SELECT setval($1, greatest((SELECT coalesce(max(id), 0) FROM "${t.table}"), 1))`, [seq]);
        return r.rowCount ?? 0;
      });
    }
  } finally {
    src.release();
    dst.release();
    await from.end();
    await to.end();
  }
  return { copied };
}

/** Cleanup after a failed restore: drops the restore's own new database, never the live one or anything else. */
export async function dropRestoreTarget(plan: { restoreId: string; target: string; live: string }): Promise<{ dropped: boolean }> {
  if (!plan.target.startsWith(RESTORE_PREFIX) || plan.target === plan.live || plan.target !== restoreTargetName(plan.restoreId)) {
    throw ApplicationFailure.nonRetryable(`refusing to drop ${plan.target}: not the database of restore ${plan.restoreId}`, 'RestorePlanInvalid');
  }
  return withAdmin(async (a) => {
    if (!(await databaseExists(a, plan.target))) return { dropped: false };
    await a.query(`DROP DATABASE ${quoteIdent(plan.target)} WITH (FORCE)`);
    return { dropped: true };
  });
}

export interface RestoreRecord {
  restoreId: string;
  database?: string;
  /** Set on the first record: what is being restored. */
  start?: { backup: string; forced: boolean };
  plan?: Pick<RestorePlan, 'backupId' | 'file' | 'target' | 'previous'>;
  step?: { name: string; status: 'ok' | 'skipped' | 'failed'; detail?: unknown };
  finish?: { status: 'succeeded' | 'failed'; error?: string };
}

/** Writes a restore's row and its steps into the live database (upserts: a retried step is one row). */
export async function recordRestore(r: RestoreRecord): Promise<void> {
  const cfg = loadConfig();
  const live = liveDatabase(cfg, r.database);
  await withPool(live, async (p) => {
    try {
      await p.query(
        `INSERT INTO restores (id, live_database, backup_file, forced) VALUES ($1, $2, $3, $4)
         ON CONFLICT (id) DO NOTHING`, [r.restoreId, live, r.start?.backup ?? null, r.start?.forced ?? false]);
    } catch (err) {
      if ((err as { code?: string }).code === '42P01') throw ApplicationFailure.nonRetryable(`database ${live} has no restores table; run \`marquee migrate\` first`, 'SchemaMissing');
      throw err;
    }
    if (r.plan) {
      await p.query('UPDATE restores SET backup_id = $2, backup_file = $3, restored_database = $4, previous_database = $5 WHERE id = $1',
        [r.restoreId, r.plan.backupId, r.plan.file, r.plan.target, r.plan.previous]);
    }
    if (r.step) {
      await p.query(
        `INSERT INTO restore_steps (restore_id, step, status, detail) VALUES ($1, $2, $3, $4)
         ON CONFLICT (restore_id, step) DO UPDATE SET status = EXCLUDED.status, detail = EXCLUDED.detail, at = now()`,
        [r.restoreId, r.step.name, r.step.status, JSON.stringify(r.step.detail ?? null)]);
    }
    if (r.finish) {
      await p.query('UPDATE restores SET status = $2, error = $3, ended_at = coalesce(ended_at, now()) WHERE id = $1',
        [r.restoreId, r.finish.status, r.finish.error ?? null]);
    }
  });
}
