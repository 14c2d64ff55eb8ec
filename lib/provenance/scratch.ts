/**
 * The scratch database `reproduce` rebuilds the past in: a backup restored with pg_restore (after
 * the same checks a DatabaseRestore makes: manifest, size, sha256, row counts), or a freshly
 * migrated empty database when no backup precedes the answer. Only databases named
 * marquee_repro_* are ever created or dropped here; the live database is only read.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import type { Config } from '../config.ts';
import { createPool, databaseUrl, migrate, type Pool } from '../db.ts';
import { sha256File } from '../backup/checksum.ts';
import { manifestPath, manifestProblems, parseManifest, rowCountProblems, type BackupManifest } from '../backup/manifest.ts';
import { assertDatabaseName, quoteIdent } from '../backup/names.ts';
import { ProvenanceError } from './trace.ts';

export const SCRATCH_PREFIX = 'marquee_repro_';

export const scratchName = (servedId: number): string => `${SCRATCH_PREFIX}${servedId}`;

function assertScratch(name: string): string {
  assertDatabaseName(name);
  if (!name.startsWith(SCRATCH_PREFIX)) throw new ProvenanceError(`refusing to use ${name} as a scratch database: its name must start with ${SCRATCH_PREFIX}`);
  return name;
}

async function withAdmin<T>(cfg: Config, fn: (admin: Pool) => Promise<T>): Promise<T> {
  const admin = createPool(cfg, { database: 'postgres', max: 1, applicationName: 'marquee-reproduce' });
  try {
    return await fn(admin);
  } finally {
    await admin.end();
  }
}

/** Drops (if there) and creates the scratch database, empty. */
async function recreate(cfg: Config, name: string): Promise<void> {
  await withAdmin(cfg, async (a) => {
    await a.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
    await a.query(`CREATE DATABASE ${quoteIdent(name)} TEMPLATE template0`);
    await a.query(`COMMENT ON DATABASE ${quoteIdent(name)} IS ${pg.escapeLiteral('marquee reproduce scratch database; safe to drop')}`);
  });
}

export async function dropScratch(cfg: Config, name: string): Promise<void> {
  assertScratch(name);
  await withAdmin(cfg, (a) => a.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`));
}

/** The manifest of a backup file, checked against the file and its backups row; any problem refuses it. */
export async function verifiedManifest(file: string, row?: { sizeBytes: number; sha256: string; file: string }): Promise<BackupManifest> {
  if (!existsSync(file)) throw new ProvenanceError(`the backup file ${file} does not exist`);
  if (!existsSync(manifestPath(file))) throw new ProvenanceError(`no manifest beside ${file}: not a Marquee backup`);
  const manifest = parseManifest(readFileSync(manifestPath(file), 'utf8'));
  const facts = await sha256File(file);
  const problems = manifestProblems(manifest, { name: path.basename(file), ...facts }, row);
  if (problems.length) throw new ProvenanceError(`backup ${file} refused: ${problems.join('; ')}`);
  return manifest;
}

function pgRestore(url: string, file: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('pg_restore', ['--exit-on-error', '--no-owner', `--dbname=${url}`, file], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => { stderr = (stderr + c.toString()).slice(-8000); });
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve() : reject(new ProvenanceError(`pg_restore exited with ${code}: ${stderr.trim() || '(no output)'}`))));
  });
}

async function tableCounts(db: Pool): Promise<Record<string, number>> {
  const { rows } = await db.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 1`);
  const counts: Record<string, number> = {};
  for (const { name } of rows) counts[name] = Number((await db.query(`SELECT count(*)::bigint AS n FROM public."${name.replace(/"/g, '""')}"`)).rows[0].n);
  return counts;
}

export interface Scratch {
  name: string;
  pool: Pool;
  /** Migrations applied on top of the backup (an older backup predates some). */
  migrated: string[];
}

/**
 * Restores a verified backup into the scratch database, checks its rows against the manifest and
 * migrates it to the current schema. A failure drops what was made.
 */
export async function restoreScratch(cfg: Config, name: string, file: string, manifest: BackupManifest): Promise<Scratch> {
  assertScratch(name);
  await recreate(cfg, name);
  let pool: Pool | undefined;
  try {
    await pgRestore(databaseUrl(cfg, name), file);
    pool = createPool(cfg, { database: name, max: 4, applicationName: 'marquee-reproduce' });
    const problems = rowCountProblems(manifest.rowCounts, await tableCounts(pool));
    if (problems.length) throw new ProvenanceError(`the restored scratch database does not match the manifest of ${path.basename(file)}: ${problems.join('; ')}`);
    const migrated = await migrate(pool);
    return { name, pool, migrated };
  } catch (err) {
    await pool?.end().catch(() => undefined);
    await dropScratch(cfg, name).catch(() => undefined);
    throw err;
  }
}

/** An empty scratch database with the current schema, for a replay from the start of the log. */
export async function freshScratch(cfg: Config, name: string): Promise<Scratch> {
  assertScratch(name);
  await recreate(cfg, name);
  const pool = createPool(cfg, { database: name, max: 4, applicationName: 'marquee-reproduce' });
  try {
    return { name, pool, migrated: await migrate(pool) };
  } catch (err) {
    await pool.end().catch(() => undefined);
    await dropScratch(cfg, name).catch(() => undefined);
    throw err;
  }
}
