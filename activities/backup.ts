/**
 * The side effects of the DatabaseBackup workflow. Every activity may run twice (a worker dies,
 * Temporal retries it), so each one checks what is already done first: files are written under a
 * temporary name and renamed, rows are upserted by a natural key.
 */
import { createWriteStream, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { durationMs } from '../lib/duration.ts';
import { databaseUrl } from '../lib/db.ts';
import { HashCounter, sha256File } from '../lib/backup/checksum.ts';
import { MANIFEST_FORMAT, manifestPath, manifestProblems, parseManifest, type BackupManifest } from '../lib/backup/manifest.ts';
import { backupFileName } from '../lib/backup/names.ts';
import { backupDir, liveDatabase, pgDumpVersion, runTool, shortPool, tableCounts, withPool } from '../lib/backup/postgres.ts';
import { expiredBackups } from '../lib/backup/retention.ts';
import type { ActivityDeps } from './deps.ts';
import { workflowOf } from './failures.ts';
import { heartbeatEvery } from './heartbeat.ts';

export interface DumpInput {
  /** The database to back up; defaults to the one in cfg.postgres.url. */
  database?: string;
  /** The backups directory; defaults to cfg.backup.dir. */
  dir?: string;
}

export interface DumpResult { path: string; manifest: BackupManifest }
export interface RetentionInput {
  database?: string;
  keepLast?: number;
  keepYoungerThan?: string;
  /** The workflow's clock, so a replayed decision is the same one. */
  nowMs: number;
}


export function backupActivities({ cfg, clock }: ActivityDeps) {
  return {

    /**
     * pg_dump in custom format, streamed through a hash into `<file>.partial` and renamed when complete,
     * with the manifest beside it. The row counts, ingest offsets and release come from the very
     * snapshot pg_dump reads (an exported snapshot held open for the whole dump), so they describe
     * exactly the data in the file. The name comes from the run and the activity's first scheduling
     * time, so a retry rewrites the same file, and a finished one is returned as it is.
     */
    async dumpDatabase(input: DumpInput = {}): Promise<DumpResult> {
      const ctx = Context.current();
      const { workflowId, runId } = workflowOf(ctx);
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

      const started = clock();
      const db = shortPool(cfg, database, 1);
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
            durationMs: clock() - started,
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
    },


    /** The backups row for a dump, upserted by file so a retry (or a re-run on the same file) leaves one row. */
    async recordBackup(input: { database?: string; path: string; manifest: BackupManifest }): Promise<{ id: number }> {
      const m = input.manifest;
      return withPool(cfg, liveDatabase(cfg, input.database), async (p) => {
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
    },

    /** Deletes the backup files retention lets go (cfg.backup.keepLast / keepYoungerThan) and marks their rows deleted. */
    async applyRetention(input: RetentionInput): Promise<{ deleted: string[]; kept: number }> {
      const keepLast = input.keepLast ?? cfg.backup.keepLast;
      const keepMs = durationMs(input.keepYoungerThan ?? cfg.backup.keepYoungerThan);
      return withPool(cfg, liveDatabase(cfg, input.database), async (p) => {
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
    },
  };
}
