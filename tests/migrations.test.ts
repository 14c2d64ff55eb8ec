import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate, readMigrations, type Pool } from '../lib/db.ts';
import { scratchDatabase } from './support/db.ts';

async function schemaSnapshot(pool: Pool): Promise<string> {
  const cols = await pool.query(`SELECT table_name, column_name, data_type, is_nullable, column_default
    FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, ordinal_position`);
  const idx = await pool.query(`SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY indexname`);
  const cons = await pool.query(`SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
    WHERE connamespace = 'public'::regnamespace ORDER BY conname`);
  return JSON.stringify({ cols: cols.rows, idx: idx.rows, cons: cons.rows });
}

describe('migrations on real Postgres', () => {
  let db: Awaited<ReturnType<typeof scratchDatabase>>;
  beforeAll(async () => { db = await scratchDatabase('migr'); });
  afterAll(async () => { await db?.drop(); });

  it('creates the tables of the architecture and records every file', async () => {
    const { rows } = await db.pool.query<{ table_name: string }>(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'`);
    const tables = rows.map((r) => r.table_name);
    for (const t of ['movies', 'users', 'watches', 'ratings', 'recommendation_events', 'served_recommendations',
      'user_assignments', 'releases', 'backups', 'ingest_offsets', 'dead_letters', 'accounts', 'routing_state']) {
      expect(tables).toContain(t);
    }
    const applied = await db.pool.query('SELECT version FROM schema_migrations ORDER BY version');
    expect(applied.rows.map((r) => r.version)).toEqual(readMigrations().map((m) => m.version));
  });

  it('applied twice leaves the schema unchanged', async () => {
    const before = await schemaSnapshot(db.pool);
    expect(await migrate(db.pool)).toEqual([]);
    expect(await schemaSnapshot(db.pool)).toBe(before);
  });

  it('marquee_bit_or ORs bitmaps of any lengths and is inlined (no function call per upserted row)', async () => {
    const { rows } = await db.pool.query(`SELECT marquee_bit_or(B'101', B'01011')::text AS ab, marquee_bit_or(B'01011', B'101')::text AS ba,
      marquee_bit_or(B'', B'1')::text AS empty, marquee_bit_or(NULL, B'1') IS NULL AS null_in`);
    expect(rows[0]).toEqual({ ab: '11111', ba: '11111', empty: '1', null_in: true });
    // Inlined, the plan shows the function's body (a CASE) where the call was.
    const plan = await db.pool.query(`EXPLAIN (VERBOSE) SELECT marquee_bit_or(x, y) FROM (VALUES (B'1'::varbit, B'01'::varbit), (B'11', B'1')) v(x, y)`);
    const text = plan.rows.map((r) => r['QUERY PLAN']).join('\n');
    expect(text).toMatch(/CASE WHEN/);
    expect(text).not.toMatch(/marquee_bit_or\(/);
  });

  it('refuses a migration file that was edited after it was applied', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'marquee-migr-'));
    writeFileSync(path.join(dir, '001_initial.sql'), readMigrations()[0].sql + '\n-- edited\n');
    await expect(migrate(db.pool, dir)).rejects.toThrow(/001_initial\.sql was changed after it was applied/);
  });

  it('rolls back a failing migration and names it', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'marquee-migr-'));
    for (const m of readMigrations()) writeFileSync(path.join(dir, m.name), m.sql);
    writeFileSync(path.join(dir, '999_broken.sql'), 'CREATE TABLE half_done (id int); SELECT no_such_function();');
    await expect(migrate(db.pool, dir)).rejects.toThrow(/999_broken\.sql failed/);
    const { rows } = await db.pool.query(`SELECT to_regclass('public.half_done') AS t`);
    expect(rows[0].t).toBeNull();
  });
});
