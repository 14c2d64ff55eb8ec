/**
 * `marquee eval offline` and `marquee eval online`: the same evaluations the CanaryRelease
 * workflow runs (offline gate, judge), run by hand against the live database, printed as a table
 * or as JSON.
 */
import { loadConfig } from '../lib/config.ts';
import { createPool } from '../lib/db.ts';
import { judgeReleaseWith, offlineGateWith } from '../lib/eval/release.ts';
import { evalSettings } from '../lib/eval/settings.ts';
import { formatFairness } from '../lib/report/release.ts';
import { parseOptions, UsageError, withUsage, type OptionSpec } from './args.ts';

export const evalUsage = {
  offline: 'eval offline --model models/<spec>.json [--against models/<spec>.json] [--cutoff <ISO time>] [--test-fraction F] [--max-users N] [--min-users N] [--json]',
  online: 'eval online --release <id> [--at <ISO time>] [--json]',
};

export const evalSummary = {
  offline: 'score a model spec against main\'s (or --against) on the stored history split at a cutoff, as served for asOf=cutoff: hit@20, NDCG@20, recall@20 for all, warm and cold users, coverage, popularity bias, and the gate (on warm users when there are enough)',
  online: 'the online metric per slot for a release and the judge\'s verdict (Successful, Failed, Inconclusive) with its numbers',
};

function parse(args: string[], options: OptionSpec): Record<string, string | boolean | undefined> {
  return parseOptions(args, options, false).values as Record<string, string | boolean | undefined>;
}

function positiveInt(name: string, v: string | boolean | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${name} must be a positive integer (got ${String(v)})`);
  return n;
}

function isoTime(name: string, v: string | boolean | undefined): Date | undefined {
  if (v === undefined) return undefined;
  const d = new Date(String(v));
  if (Number.isNaN(d.getTime())) throw new UsageError(`--${name} must be an ISO time such as 2025-01-06T12:00:00Z (got ${String(v)})`);
  return d;
}

async function offline(args: string[]): Promise<number> {
  const v = parse(args, {
    model: { type: 'string' }, against: { type: 'string' }, cutoff: { type: 'string' }, 'test-fraction': { type: 'string' },
    'max-users': { type: 'string' }, 'min-users': { type: 'string' }, json: { type: 'boolean' },
  });
  if (typeof v.model !== 'string') throw new UsageError('--model is required');
  const cfg = loadConfig();
  const settings = evalSettings(cfg);
  const o = settings.offline;
  o.maxUsers = positiveInt('max-users', v['max-users']) ?? o.maxUsers;
  o.minUsers = positiveInt('min-users', v['min-users']) ?? o.minUsers;
  if (v['test-fraction'] !== undefined) {
    const f = Number(v['test-fraction']);
    if (!(f > 0 && f < 1)) throw new UsageError(`--test-fraction must be between 0 and 1 (got ${String(v['test-fraction'])})`);
    o.testFraction = f;
    o.holdoutMs = null;
    o.cutoff = null;
  }
  const cutoff = isoTime('cutoff', v.cutoff);
  const pool = createPool(cfg, { max: 6, applicationName: 'marquee-eval' });
  try {
    let last = 0;
    const progress = v.json || !process.stderr.isTTY ? undefined : (p: { phase: string; done: number; total: number }) => {
      if (Date.now() - last < 1000) return;
      last = Date.now();
      process.stderr.write(`  … ${p.phase} ${p.done}/${p.total}\n`);
    };
    const r = await offlineGateWith(pool, cfg, settings, v.model, { against: typeof v.against === 'string' ? v.against : undefined, cutoff, progress });
    if (v.json) {
      console.log(JSON.stringify({ passed: r.passed, reason: r.reason, numbers: r.numbers, candidate: r.run?.candidate ?? null, main: r.run?.main ?? null }, null, 2));
    } else {
      console.log(r.table);
    }
    return 0;
  } finally {
    await pool.end();
  }
}

async function online(args: string[]): Promise<number> {
  const v = parse(args, { release: { type: 'string' }, at: { type: 'string' }, json: { type: 'boolean' } });
  if (typeof v.release !== 'string' || v.release === '') throw new UsageError('--release is required');
  const cfg = loadConfig();
  const pool = createPool(cfg, { max: 4, applicationName: 'marquee-eval' });
  try {
    const j = await judgeReleaseWith(pool, evalSettings(cfg), v.release, isoTime('at', v.at));
    if (v.json) {
      console.log(JSON.stringify({ verdict: j.verdict, reason: j.reason, explanation: j.explanation, numbers: j.numbers }, null, 2));
    } else {
      console.log(`release ${v.release}: ${j.verdict}\n\n${j.table}\n\n${j.explanation}\n\n${formatFairness(j.numbers).join('\n')}`);
    }
    return 0;
  } finally {
    await pool.end();
  }
}

const usage = [evalUsage.offline, evalUsage.online];
export const evalOfflineCommand = (args: string[]): Promise<number> => withUsage(usage, () => offline(args));
export const evalOnlineCommand = (args: string[]): Promise<number> => withUsage(usage, () => online(args));

/** `eval offline|online ...` as one command, for a registry that takes one word. */
export function evalCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'offline') return evalOfflineCommand(rest);
  if (sub === 'online') return evalOnlineCommand(rest);
  return withUsage(usage, async () => { throw new UsageError(`unknown eval command "${sub ?? ''}"`); });
}
