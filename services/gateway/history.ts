/**
 * The gateway's two write-behind streams: the answers it served (served_recommendations, by COPY)
 * and first assignments of users to slots (user_assignments, a multi-row insert that ignores users
 * already recorded, since COPY cannot skip conflicts).
 */
import type { Pool } from '../../lib/db.ts';
import { copyRows, arrayLiteral } from '../../lib/copy.ts';
import type { Slot } from '../../lib/routing.ts';

export interface ServedRow {
  servedAt: Date;
  userId: number;
  /** Who produced the answer: main, nightly, or popular (the fallback list). */
  slot: Slot | 'popular';
  releaseId: string | null;
  modelVersion: string | null;
  movieIds: string[];
  latencyMs: number;
  fallback: string | null;
}

export interface AssignmentRow { releaseId: string; userId: number; slot: Slot; assignedAt: Date }

const servedColumns = ['served_at', 'user_id', 'slot', 'release_id', 'model_version', 'movie_ids', 'latency_ms', 'fallback'];

export function writeServed(pool: Pool): (rows: ServedRow[]) => Promise<void> {
  return async (rows) => {
    const client = await pool.connect();
    try {
      await copyRows(client, 'served_recommendations', servedColumns, rows.map((r) => [
        r.servedAt.toISOString(), r.userId, r.slot, r.releaseId, r.modelVersion, arrayLiteral(r.movieIds), Math.round(r.latencyMs * 1000) / 1000, r.fallback,
      ]));
    } finally {
      client.release();
    }
  };
}

export function writeAssignments(pool: Pool): (rows: AssignmentRow[]) => Promise<void> {
  return async (rows) => {
    await pool.query(
      `INSERT INTO user_assignments (release_id, user_id, slot, assigned_at)
       SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::timestamptz[])
       ON CONFLICT (release_id, user_id) DO NOTHING`,
      [rows.map((r) => r.releaseId), rows.map((r) => r.userId), rows.map((r) => r.slot), rows.map((r) => r.assignedAt.toISOString())]);
  };
}
