/**
 * Postgres plumbing shared by the backup and restore activities and the tools around them: where
 * things are, short-lived pools on a named database, the client tools (pg_dump, pg_restore) run
 * with streamed pipes, and the facts a manifest records.
 */
import { execFileSync, spawn } from 'node:child_process';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { projectRoot, type Config } from '../config.ts';
import { createPool, type Pool } from '../db.ts';
import { assertDatabaseName } from './names.ts';

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

/** A short-lived pool; a connection ended under it (the restore's switch terminates them) must not crash the process. */
export function shortPool(cfg: Config, database: string, max = 2): Pool {
  const p = createPool(cfg, { database, max, applicationName: 'marquee-backup' });
  p.on('error', () => undefined);
  return p;
}

export async function withPool<T>(cfg: Config, database: string, fn: (p: Pool) => Promise<T>, max = 2): Promise<T> {
  const p = shortPool(cfg, database, max);
  try {
    return await fn(p);
  } finally {
    await p.end();
  }
}

/** Administrative work (create, drop, rename databases) runs on the maintenance database, never on the ones it changes. */
export const withAdmin = <T>(cfg: Config, fn: (p: Pool) => Promise<T>): Promise<T> => withPool(cfg, 'postgres', fn, 1);

/**
 * Runs a Postgres client tool with its stdin fed from `stdin` and its stdout piped into `stdout`
 * (both optional); resolves when it exited 0 and every pipe is flushed, else rejects with its stderr.
 */
export async function runTool(cmd: string, args: string[], opts: { stdin?: NodeJS.ReadableStream; stdout?: NodeJS.WritableStream[]; signal?: AbortSignal } = {}): Promise<void> {
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
export const pgDumpVersion = (): string => (dumpVersion ??= execFileSync('pg_dump', ['--version']).toString().trim());

export async function tableCounts(client: pg.PoolClient | Pool): Promise<Record<string, number>> {
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

export async function databaseExists(admin: Pool, name: string): Promise<boolean> {
  return (await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount === 1;
}

export async function databaseComment(admin: Pool, name: string): Promise<string | null> {
  const { rows } = await admin.query<{ c: string | null }>(
    `SELECT shobj_description(oid, 'pg_database') AS c FROM pg_database WHERE datname = $1`, [name]);
  return rows[0]?.c ?? null;
}

