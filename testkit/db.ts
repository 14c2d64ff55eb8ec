/**
 * Scratch databases for tests and benchmarks: a fresh, migrated database of one's own on the
 * stack's Postgres, dropped by the returned cleanup, so that runs side by side never share rows.
 */
import { randomBytes } from 'node:crypto';
import { loadConfig, type Config } from '../lib/config.ts';
import { createPool, migrate, type Pool } from '../lib/db.ts';
import { requireServer } from './net.ts';

export interface ScratchDatabase { name: string; pool: Pool; drop: () => Promise<void> }

/**
 * Named `marquee_<prefix>_<random hex>` (benchmarks use prefixes starting with `bench_`, so a
 * leftover is easy to find). Fails, never skips, when Postgres does not answer. A failed migration
 * drops the database again. `drop` ends the pool and drops the database even while other
 * processes (slots, gateways) still hold connections to it.
 */
export async function scratchDatabase(prefix = 'test', opts: { cfg?: Config; max?: number } = {}): Promise<ScratchDatabase> {
  const cfg = opts.cfg ?? loadConfig();
  const url = new URL(cfg.postgres.url);
  await requireServer('postgres', Number(url.port || 5432), url.hostname);
  const name = `marquee_${prefix}_${randomBytes(4).toString('hex')}`;
  const admin = createPool(cfg, { max: 1 });
  const dropIt = async () => {
    await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await admin.end();
  };
  await admin.query(`CREATE DATABASE "${name}"`);
  const pool = createPool(cfg, { database: name, max: opts.max ?? 10 });
  // An idle connection the server ends (the FORCE drop, a Postgres restart) must not crash the process.
  pool.on('error', () => undefined);
  try {
    await migrate(pool);
  } catch (err) {
    await pool.end().catch(() => undefined);
    await dropIt().catch(() => undefined);
    throw err;
  }
  return {
    name,
    pool,
    drop: async () => {
      await pool.end();
      await dropIt();
    },
  };
}
