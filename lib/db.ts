import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { projectRoot, type Config } from './config.ts';

// Timestamps come back as Date; bigint counts as JS numbers (our counts stay far below 2^53).
pg.types.setTypeParser(20, (v) => Number(v));

export type Pool = pg.Pool;

/** cfg.postgres.url with another database name: the one place that rewrites the URL. */
export function databaseUrl(cfg: Config, database: string): string {
  const u = new URL(cfg.postgres.url);
  u.pathname = `/${database}`;
  return u.toString();
}

export function createPool(cfg: Config, opts: { max?: number; database?: string; applicationName?: string } = {}): pg.Pool {
  const pool = new pg.Pool({
    connectionString: opts.database ? databaseUrl(cfg, opts.database) : cfg.postgres.url,
    max: opts.max ?? 10,
    application_name: opts.applicationName ?? 'marquee',
    connectionTimeoutMillis: 5000,
  });
  // An idle connection dropped by the server (restart, database swap) must not crash the process;
  // the pool replaces it on the next checkout.
  pool.on('error', (err) => {
    if ((err as { code?: string }).code !== '57P01') console.warn(`postgres: idle connection lost: ${err.message}`);
  });
  // A connection that dies while checked out (a server restart mid-transaction) emits 'error' on
  // its client, which pg-pool no longer listens to then: unheard, it would crash the process. The
  // caller's query rejects with the same error, and its release(true) discards the client.
  pool.on('connect', (client) => client.on('error', () => undefined));
  return pool;
}

/**
 * Runs fn between BEGIN and COMMIT on one connection: one taken from a pool (and given back), or
 * a client the caller holds. A throw rolls back and rethrows, so no caller leaves a transaction
 * open on a pooled connection. `begin` may carry options (isolation level, READ ONLY).
 */
export async function withTransaction<T>(db: pg.Pool | pg.PoolClient, fn: (client: pg.PoolClient) => Promise<T>, begin = 'BEGIN'): Promise<T> {
  const owned = !('release' in db);
  const client = owned ? await (db as pg.Pool).connect() : (db as pg.PoolClient);
  try {
    await client.query(begin);
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    if (owned) client.release();
  }
}

export const migrationsDir = path.join(projectRoot, 'db', 'migrations');

interface MigrationFile { version: number; name: string; sql: string; checksum: string }

export function readMigrations(dir = migrationsDir): MigrationFile[] {
  const files = readdirSync(dir).filter((f) => /^\d+_[\w-]+\.sql$/.test(f)).sort();
  const seen = new Set<number>();
  return files.map((name) => {
    const version = Number(name.split('_')[0]);
    if (seen.has(version)) throw new Error(`two migrations share version ${version}: rename ${name}`);
    seen.add(version);
    const sql = readFileSync(path.join(dir, name), 'utf8');
    return { version, name, sql, checksum: createHash('sha256').update(sql).digest('hex') };
  });
}

/**
 * Applies each migration file once, in order, each in its own transaction, and records it.
 * An advisory lock keeps two processes from migrating at once; an edited applied file is an error.
 */
export async function migrate(pool: pg.Pool, dir = migrationsDir): Promise<string[]> {
  const migrations = readMigrations(dir);
  const client = await pool.connect();
  const applied: string[] = [];
  try {
    await client.query('SELECT pg_advisory_lock(7242001)');
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const { rows } = await client.query<{ version: number; name: string; checksum: string }>('SELECT version, name, checksum FROM schema_migrations');
    const done = new Map(rows.map((r) => [r.version, r]));
    for (const m of migrations) {
      const prior = done.get(m.version);
      if (prior) {
        if (prior.checksum !== m.checksum) throw new Error(`migration ${m.name} was changed after it was applied (checksum differs); add a new migration instead`);
        continue;
      }
      await withTransaction(client, async (c) => {
        await c.query(m.sql);
        await c.query('INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)', [m.version, m.name, m.checksum]);
      }).catch((err: Error) => {
        throw new Error(`migration ${m.name} failed: ${err.message}`);
      });
      applied.push(m.name);
    }
  } finally {
    await client.query('SELECT pg_advisory_unlock(7242001)').catch(() => undefined);
    client.release();
  }
  return applied;
}
