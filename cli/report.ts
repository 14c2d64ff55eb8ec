/**
 * `marquee report`: what the recommender does to its users over a period (exposure, popularity
 * bias, fairness across user and movie groups, the default-rating bias, feedback loops), written
 * as report.json and a self-contained report.html.
 */
import path from 'node:path';
import { loadConfig } from '../lib/config.ts';
import { durationMs } from '../lib/duration.ts';
import { createPool } from '../lib/db.ts';
import { evalSettings } from '../lib/eval/settings.ts';
import { makeReport, writeReport } from '../lib/report/run.ts';
import { parseOptions, UsageError, withUsage } from './args.ts';

export const reportUsage = 'report [--since <ISO time>] [--until <ISO time>] [--release <id>] [--window 1h] [--min-group-lists 30] [--out <dir>]';
export const reportSummary = 'exposure, popularity bias, fairness and feedback loops of the served lists: report.json and report.html (default dir .marquee/reports/<time>)';

function isoTime(name: string, v: string | undefined): Date | undefined {
  if (v === undefined) return undefined;
  const d = new Date(v);
  if (Number.isNaN(d.getTime())) throw new UsageError(`--${name} must be an ISO time such as 2025-01-06T12:00:00Z (got ${v})`);
  return d;
}

async function report(args: string[]): Promise<number> {
  const { values: v } = parseOptions(args, {
    since: { type: 'string' }, until: { type: 'string' }, release: { type: 'string' }, window: { type: 'string' }, out: { type: 'string' }, 'min-group-lists': { type: 'string' },
  }, false);
  const since = isoTime('since', v.since);
  const until = isoTime('until', v.until);
  if (since && until && since >= until) throw new UsageError(`--since (${v.since}) must be before --until (${v.until})`);
  if (v.release === '') throw new UsageError('--release needs a release id');
  let windowMs: number | undefined;
  if (v.window !== undefined) {
    try { windowMs = durationMs(v.window); } catch (err) { throw new UsageError(`--window: ${(err as Error).message}`); }
    if (windowMs < 1000) throw new UsageError('--window must be at least 1s');
  }
  let minGroupLists: number | undefined;
  if (v['min-group-lists'] !== undefined) {
    minGroupLists = Number(v['min-group-lists']);
    if (!Number.isInteger(minGroupLists) || minGroupLists < 1) throw new UsageError(`--min-group-lists must be a positive integer (got ${v['min-group-lists']})`);
  }
  const cfg = loadConfig();
  const out = path.resolve(v.out ?? path.join('.marquee', 'reports', new Date().toISOString().replace(/[:.]/g, '-')));
  const pool = createPool(cfg, { max: 8, applicationName: 'marquee-report' });
  try {
    const r = await makeReport(pool, { since, until, releaseId: v.release, windowMs, minGroupLists, attributionWindowMs: evalSettings(cfg).attributionWindowMs });
    const files = writeReport(r, out);
    const all = r.slots.all;
    console.log(`period ${r.period.since} – ${r.period.until}${r.period.releaseId ? ` (release ${r.period.releaseId})` : ''}: ${all.lists} lists to ${all.users} users`);
    console.log(`exposure Gini ${all.gini?.toFixed(3) ?? '–'}, coverage ${all.coverage === null ? '–' : (all.coverage * 100).toFixed(1) + ' %'}, ARP ${all.arp?.toFixed(1) ?? '–'}, long tail ${all.longTailShare === null ? '–' : (all.longTailShare * 100).toFixed(1) + ' %'}`);
    for (const l of r.loops.verdicts) console.log(`${l.loop}: ${l.detected ? 'DETECTED' : 'not detected'} — ${l.evidence}`);
    for (const n of r.notes) console.log(`note: ${n}`);
    console.log(`wrote ${files.json} and ${files.html} (${files.charts} charts)`);
    return 0;
  } finally {
    await pool.end();
  }
}

export const reportCommand = (args: string[]): Promise<number> => withUsage(reportUsage, () => report(args));
