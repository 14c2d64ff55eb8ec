import type { Pool } from '../db.ts';
import type { IngestOffset } from './manifest.ts';

/** A row of `backups` as the CLI, the restore and provenance read it. */
export interface BackupRow {
  id: number;
  file: string;
  createdAt: Date;
  sizeBytes: number;
  sha256: string;
  ingestOffsets: IngestOffset[];
  rowCounts: Record<string, number>;
  releaseId: string | null;
  workflowId: string | null;
  runId: string | null;
  deletedAt: Date | null;
}

const columns = `id, file, created_at AS "createdAt", size_bytes AS "sizeBytes", sha256, ingest_offsets AS "ingestOffsets",
  row_counts AS "rowCounts", release_id AS "releaseId", workflow_id AS "workflowId", run_id AS "runId", deleted_at AS "deletedAt"`;

export async function listBackups(pool: Pool, opts: { includeDeleted?: boolean } = {}): Promise<BackupRow[]> {
  const { rows } = await pool.query<BackupRow>(
    `SELECT ${columns} FROM backups ${opts.includeDeleted ? '' : 'WHERE deleted_at IS NULL'} ORDER BY created_at DESC, id DESC`);
  return rows;
}

export async function getBackup(pool: Pool, id: number): Promise<BackupRow | undefined> {
  const { rows } = await pool.query<BackupRow>(`SELECT ${columns} FROM backups WHERE id = $1`, [id]);
  return rows[0];
}

/**
 * For provenance: the newest backup whose snapshot was taken at or before `at`, and so the Kafka
 * offsets from which a replay up to `at` must start. Deleted backups count too (their offsets
 * still say what the data was), the caller checks `deletedAt` before restoring one.
 */
export async function lastBackupBefore(pool: Pool, at: Date): Promise<BackupRow | undefined> {
  const { rows } = await pool.query<BackupRow>(
    `SELECT ${columns} FROM backups WHERE created_at <= $1 ORDER BY created_at DESC, id DESC LIMIT 1`, [at]);
  return rows[0];
}
