/**
 * The side effects of the DatabaseRestore workflow. Every activity may run twice (a worker dies,
 * Temporal retries it), so each one checks what is already done first: the restore fills a
 * database named by its workflow id, and the switch looks before it renames. Problems no retry
 * can fix (a corrupt or foreign file, a refused restore) are non-retryable.
 */
import { createReadStream, createWriteStream, existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { databaseUrl, migrate, withTransaction } from '../lib/db.ts';
import { getBackup } from '../lib/backup/catalog.ts';
import { HashCounter, sha256File } from '../lib/backup/checksum.ts';
import { manifestPath, manifestProblems, parseManifest, rowCountProblems, type BackupManifest } from '../lib/backup/manifest.ts';
import { previousName, quoteIdent, RESTORE_PREFIX, restoreComment, restoreTargetName } from '../lib/backup/names.ts';
import { databaseComment, databaseExists, ingestAdminUrl, liveDatabase, runTool, shortPool, tableCounts, withAdmin, withPool } from '../lib/backup/postgres.ts';
import { TERMINAL_PHASES } from '../lib/release/types.ts';
import type { ActivityDeps } from './deps.ts';
import { invalid, workflowOf } from './failures.ts';
import { heartbeatEvery } from './heartbeat.ts';

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

export interface RestoreRecord {
  restoreId: string;
  database?: string;
  /** Set on the first record: what is being restored. */
  start?: { backup: string; forced: boolean };
  plan?: Pick<RestorePlan, 'backupId' | 'file' | 'target' | 'previous'>;
  step?: { name: string; status: 'ok' | 'skipped' | 'failed'; detail?: unknown };
  finish?: { status: 'succeeded' | 'failed'; error?: string };
}

/** Phases after which a release is no longer baking (the canary's own list); any other phase means a canary is in flight. */
export const TERMINAL_RELEASE_PHASES: readonly string[] = TERMINAL_PHASES;

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

export function restoreActivities({ cfg, clock }: ActivityDeps) {
  return {
    /**
     * Checks the backup before anything changes: the row, the manifest beside the file, the file's
     * size and sha256, and that pg_restore can read its table of contents. Any problem is final.
     */
    async verifyBackup(input: VerifyInput): Promise<RestorePlan> {
      const ctx = Context.current();
      const { workflowId: restoreId, runId } = workflowOf(ctx);
      const live = liveDatabase(cfg, input.database);
      const label = `backup ${input.backup}`;
      let file: string;
      let backupId: number | null = null;
      let row: { sizeBytes: number; sha256: string; file: string } | undefined;
      if (typeof input.backup === 'number' || /^\d+$/.test(input.backup)) {
        backupId = Number(input.backup);
        const b = await withPool(cfg, live, (p) => getBackup(p, backupId!));
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
      return { restoreId, runId, live, target: restoreTargetName(restoreId), previous: previousName(live, clock()), backupId, file, manifest };
    },

    /** Refuses (non-retryable) while a release is baking, unless forced; says which releases it saw either way. */
    async checkReleases(input: { database?: string; force?: boolean }): Promise<{ baking: { id: string; phase: string }[]; forced: boolean }> {
      const baking = await withPool(cfg, liveDatabase(cfg, input.database), async (p) => (await p.query<{ id: string; phase: string }>(
        'SELECT id, phase FROM releases WHERE phase <> ALL($1::text[]) ORDER BY started_at', [TERMINAL_RELEASE_PHASES])).rows);
      if (baking.length && !input.force) {
        throw ApplicationFailure.nonRetryable(
          `restore refused: release ${baking.map((r) => `${r.id} (${r.phase})`).join(', ')} is baking; wait for it to end, abort it, or restore with --force`,
          'ReleaseBaking');
      }
      return { baking, forced: baking.length > 0 };
    },

    /** Stops ingest reading Kafka while the database is swapped; "not running" is recorded, not an error. */
    async pauseIngest(input: { url?: string } = {}): Promise<{ paused: boolean; detail: string }> {
      const r = await ingestAdmin(ingestAdminUrl(cfg, input.url), 'pause');
      return { paused: r.ok, detail: r.detail };
    },

    async resumeIngest(input: { url?: string } = {}): Promise<{ resumed: boolean; detail: string }> {
      const r = await ingestAdmin(ingestAdminUrl(cfg, input.url), 'resume');
      return { resumed: r.ok, detail: r.detail };
    },

    /**
     * pg_restore into the plan's new database, fed from the file through a byte counter so the
     * heartbeat carries progress. A retry drops what an earlier attempt left and starts over; the
     * live database is not touched.
     */
    async restoreInto(plan: RestorePlan): Promise<{ bytes: number; durationMs: number }> {
      const ctx = Context.current();
      if (!plan.target.startsWith(RESTORE_PREFIX) || plan.target === plan.live) throw ApplicationFailure.nonRetryable(`refusing to restore into ${plan.target}`, 'RestorePlanInvalid');
      const started = clock();
      await withAdmin(cfg, async (a) => {
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
      return { bytes: counter.bytes, durationMs: clock() - started };
    },

    /**
     * The restored database must hold exactly the manifest's rows per table; then it is migrated to
     * the current schema (an old backup may predate migrations), analysed, and marked ready for the
     * switch. pg_restore leaves no planner statistics, and until autovacuum gets to the tables the
     * planner guesses one row per table: the judge's and the report's joins then run as nested loops.
     */
    async verifyRestored(plan: RestorePlan): Promise<{ rowCounts: Record<string, number>; migrated: string[] }> {
      const p = shortPool(cfg, plan.target, 1);
      let rowCounts: Record<string, number>;
      let migrated: string[];
      try {
        rowCounts = await tableCounts(p);
        const problems = rowCountProblems(plan.manifest.rowCounts, rowCounts);
        if (problems.length) throw invalid(`restored database ${plan.target} does not match the manifest of ${plan.manifest.file}`, problems, 'RestoreMismatch');
        migrated = await migrate(p);
        await p.query('ANALYZE');
      } finally {
        await p.end();
      }
      await withAdmin(cfg, (a) => a.query(`COMMENT ON DATABASE ${quoteIdent(plan.target)} IS ${pg.escapeLiteral(restoreComment(plan.restoreId, plan.runId))}`));
      return { rowCounts, migrated };
    },

    /**
     * The switch: in ONE transaction the live database is renamed to the plan's "previous" name (kept
     * for undo) and the restored one takes the live name. Services' connections are terminated first;
     * their pools reconnect by name and land on the restored data. Renames are transactional in
     * Postgres and a connection being set up re-checks the name after the lock, so every client sees
     * either the old or the new database, never a half state. Idempotent: the restore's comment on
     * the live database tells a retry that the switch already happened.
     */
    async switchDatabase(plan: RestorePlan): Promise<{ previous: string | null; alreadyDone: boolean; attempts: number }> {
      return withAdmin(cfg, async (a) => {
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
    },

    async carryOver(plan: RestorePlan): Promise<{ copied: Record<string, number> }> {
      const exists = await withAdmin(cfg, (a) => databaseExists(a, plan.previous));
      if (!exists) return { copied: {} };
      const from = shortPool(cfg, plan.previous, 1);
      const to = shortPool(cfg, plan.live, 1);
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
        // The rows carried over (the release in flight's, mostly) came after verifyRestored's ANALYZE.
        const carried = Object.entries(copied).filter(([, n]) => n > 0).map(([t]) => quoteIdent(t));
        if (carried.length) await dst.query(`ANALYZE ${carried.join(', ')}`);
      } finally {
        src.release();
        dst.release();
        await from.end();
        await to.end();
      }
      return { copied };
    },

    /** Cleanup after a failed restore: drops the restore's own new database, never the live one or anything else. */
    async dropRestoreTarget(plan: { restoreId: string; target: string; live: string }): Promise<{ dropped: boolean }> {
      if (!plan.target.startsWith(RESTORE_PREFIX) || plan.target === plan.live || plan.target !== restoreTargetName(plan.restoreId)) {
        throw ApplicationFailure.nonRetryable(`refusing to drop ${plan.target}: not the database of restore ${plan.restoreId}`, 'RestorePlanInvalid');
      }
      return withAdmin(cfg, async (a) => {
        if (!(await databaseExists(a, plan.target))) return { dropped: false };
        await a.query(`DROP DATABASE ${quoteIdent(plan.target)} WITH (FORCE)`);
        return { dropped: true };
      });
    },

    /** Writes a restore's row and its steps into the live database (upserts: a retried step is one row). */
    async recordRestore(r: RestoreRecord): Promise<void> {
      const live = liveDatabase(cfg, r.database);
      await withPool(cfg, live, async (p) => {
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
    },
  };
}
