import { createHash } from 'node:crypto';

// Postgres truncates identifiers to 63 bytes; names made here stay below that and are plain
// lower-case words, so they never need more than double quotes.
const MAX = 63;

export function assertDatabaseName(name: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(name)) throw new Error(`"${name}" is not a database name this tool will touch (letters, digits and _ only, at most 63)`);
  return name;
}

export const quoteIdent = (name: string): string => `"${assertDatabaseName(name)}"`;

const short = (text: string): string => createHash('sha256').update(text).digest('hex').slice(0, 10);

/** 20250106T000000Z: sortable, and safe in file and database names. */
export function stamp(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}

/** The prefix of every database a restore creates; only such databases are ever dropped by the tool. */
export const RESTORE_PREFIX = 'marquee_restore_';

/** The new database a restore fills: named by the restore's workflow id, so a retried activity finds its own. */
export function restoreTargetName(restoreId: string): string {
  return `${RESTORE_PREFIX}${short(restoreId)}`;
}

/** Where the live database goes at the switch, kept for undo. */
export function previousName(live: string, atMs: number): string {
  const suffix = `_prev_${stamp(atMs).toLowerCase()}`;
  return `${live.slice(0, MAX - suffix.length)}${suffix}`;
}

/** The dump's file name: the database, the snapshot's time and the run, so each run has its own name. */
export function backupFileName(database: string, atMs: number, runId: string): string {
  return `${database}-${stamp(atMs)}-${runId.replace(/[^A-Za-z0-9]/g, '').slice(0, 8)}.dump`;
}

/** The comment a restore puts on its database: how a retried switch knows it already happened. */
export const restoreComment = (restoreId: string, runId: string): string => `marquee-restore ${restoreId} run ${runId}`;
