import { randomBytes } from 'node:crypto';
import { loadConfig } from '../../lib/config.ts';
import { createPool, migrate, type Pool } from '../../lib/db.ts';
import { requireServer } from './servers.ts';

/** A fresh, migrated database of its own for one test file, dropped by the returned cleanup. */
export async function scratchDatabase(prefix = 'test'): Promise<{ name: string; pool: Pool; drop: () => Promise<void> }> {
  const cfg = loadConfig();
  const url = new URL(cfg.postgres.url);
  await requireServer('postgres', Number(url.port || 5432), url.hostname);
  const name = `marquee_${prefix}_${randomBytes(4).toString('hex')}`;
  const admin = createPool(cfg, { max: 1 });
  await admin.query(`CREATE DATABASE "${name}"`);
  const pool = createPool(cfg, { database: name, max: 10 });
  await migrate(pool);
  return {
    name,
    pool,
    drop: async () => {
      await pool.end();
      await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await admin.end();
    },
  };
}
