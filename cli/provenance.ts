/**
 * `marquee provenance` and `marquee reproduce`: trace a served recommendation to the model, code
 * and data behind it, and rebuild it from a backup and Kafka. Both read the live database (or
 * --database) and never change it; reproduce works in a scratch database it drops afterwards.
 *
 * Options beyond the usage lines: --database <name> reads another database than cfg.postgres.url's
 * (e.g. one kept by a restore); reproduce takes --scratch-db marquee_repro_<x> (default
 * marquee_repro_<id>) and --grace <duration> (how far past the answer a partition is still read
 * for late lines, default 60s). reproduce exits 0 when the lists match, 1 when they differ.
 */
import { parseOptions, UsageError, withUsage, type OptionSpec } from './args.ts';
import { loadConfig } from '../lib/config.ts';
import { durationMs } from '../lib/duration.ts';
import { createPool } from '../lib/db.ts';
import { assertDatabaseName } from '../lib/backup/names.ts';
import { formatReproduce, reproduce } from '../lib/provenance/reproduce.ts';
import { formatProvenance, provenanceOf, ProvenanceError, servedById, servedNearestBefore, type ServedAnswer } from '../lib/provenance/trace.ts';

export const provenanceUsage = {
  provenance: 'provenance <served-recommendation-id> | --user <id> --at <ISO time> [--json]',
  reproduce: 'reproduce <served-recommendation-id> [--topic <topic>] [--keep] [--json]',
};

export const provenanceSummary = {
  provenance: 'trace a served answer: slot, model version, spec hash, image digest, git commit, workflow run, the last backup before it and its Kafka offsets',
  reproduce: 'rebuild a served answer: restore the backup before it into a scratch database, replay Kafka up to its time, rank again, compare',
};

const parse = (args: string[], options: OptionSpec) => parseOptions(args, options);

function servedId(text: string | undefined): number {
  if (text === undefined || !/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) throw new UsageError(`expected a served recommendation id (a positive integer), got ${JSON.stringify(text ?? '')}`);
  return Number(text);
}

/** The database to read: cfg.postgres.url's, or --database (e.g. a database kept by a restore). */
function openLive(database: unknown) {
  const cfg = loadConfig();
  if (database !== undefined) assertDatabaseName(String(database));
  return { cfg, pool: createPool(cfg, { max: 4, applicationName: 'marquee-provenance', ...(database !== undefined ? { database: String(database) } : {}) }) };
}

async function findServed(pool: ReturnType<typeof createPool>, v: { id?: string; user?: string; at?: string }): Promise<ServedAnswer> {
  if (v.id !== undefined) {
    const id = servedId(v.id);
    const s = await servedById(pool, id);
    if (!s) throw new ProvenanceError(`no served recommendation with id ${id}`);
    return s;
  }
  const user = Number(v.user);
  if (!/^\d+$/.test(v.user ?? '') || !Number.isSafeInteger(user)) throw new UsageError(`--user must be a user id (a non-negative integer), got ${JSON.stringify(v.user)}`);
  const at = new Date(v.at ?? '');
  if (v.at === undefined || Number.isNaN(at.getTime())) throw new UsageError(`--at must be an ISO time such as 2025-01-06T12:00:00Z, got ${JSON.stringify(v.at ?? '')}`);
  const s = await servedNearestBefore(pool, user, at);
  if (!s) throw new ProvenanceError(`no recommendation was served to user ${user} at or before ${at.toISOString()}`);
  return s;
}

async function guarded(usage: string, fn: () => Promise<number>): Promise<number> {
  try {
    return await withUsage(usage, fn);
  } catch (err) {
    if (err instanceof ProvenanceError) {
      console.error(`marquee: ${err.message}`);
      return 1;
    }
    throw err;
  }
}

export function provenanceCommand(args: string[]): Promise<number> {
  return guarded(provenanceUsage.provenance, async () => {
    const { values: v, positionals } = parse(args, { user: { type: 'string' }, at: { type: 'string' }, json: { type: 'boolean' }, database: { type: 'string' } });
    const byUser = v.user !== undefined || v.at !== undefined;
    if (positionals.length > 1 || (byUser && positionals.length > 0) || (!byUser && positionals.length === 0)) {
      throw new UsageError('give either a served recommendation id or --user and --at');
    }
    const { pool } = openLive(v.database);
    try {
      const served = await findServed(pool, byUser ? { user: v.user as string | undefined, at: v.at as string | undefined } : { id: positionals[0] });
      const p = await provenanceOf(pool, served);
      console.log(v.json ? JSON.stringify(p, null, 2) : formatProvenance(p));
      return 0;
    } finally {
      await pool.end();
    }
  });
}

export function reproduceCommand(args: string[]): Promise<number> {
  return guarded(provenanceUsage.reproduce, async () => {
    const { values: v, positionals } = parse(args, {
      topic: { type: 'string' }, keep: { type: 'boolean' }, json: { type: 'boolean' }, database: { type: 'string' },
      'scratch-db': { type: 'string' }, grace: { type: 'string' },
    });
    if (positionals.length !== 1) throw new UsageError('give one served recommendation id');
    const id = servedId(positionals[0]);
    let graceMs: number | undefined;
    if (v.grace !== undefined) {
      try { graceMs = durationMs(String(v.grace)); } catch (err) { throw new UsageError(`--grace: ${(err as Error).message}`); }
    }
    const { cfg, pool } = openLive(v.database);
    try {
      const served = await findServed(pool, { id: String(id) });
      // Progress goes to stderr so that --json output stays one document.
      const r = await reproduce(cfg, pool, served, {
        topic: v.topic as string | undefined, keep: v.keep === true, scratch: v['scratch-db'] as string | undefined, graceMs,
        progress: (line) => console.error(`  … ${line}`),
      });
      console.log(v.json ? JSON.stringify(r, null, 2) : formatReproduce(r));
      return r.comparison.match ? 0 : 1;
    } finally {
      await pool.end();
    }
  });
}
