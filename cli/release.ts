import os from 'node:os';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import { loadConfig } from '../lib/config.ts';
import { createPool } from '../lib/db.ts';
import { gatewayAdmin } from '../lib/gateway-client.ts';
import { releaseInputProblems, type ReleaseInput } from '../lib/release/input.ts';
import type { ReleaseOutcome, ReleaseStatus } from '../lib/release/types.ts';
import { connectClient } from '../lib/temporal.ts';
import { abortSignal, promoteUpdate, statusQuery } from '../workflows/canary.ts';
import { parseOptions, UsageError, withUsage } from './args.ts';

const releaseUsage = 'release <version> --model models/<spec>.json [--percent N] [--bake 12h] [--interval 30m] [--notify a@b,...] [--wait]';

const who = () => { try { return os.userInfo().username; } catch { return 'operator'; } };

export function releaseCommand(args: string[]): Promise<number> {
  return withUsage(releaseUsage, () => release(args));
}

async function release(args: string[]): Promise<number> {
  const { positionals, values: opts } = parseOptions(args, {
    model: { type: 'string' }, percent: { type: 'string' }, bake: { type: 'string' }, interval: { type: 'string' },
    notify: { type: 'string' }, wait: { type: 'boolean' },
  });
  if (positionals.length > 1) throw new UsageError(`one version, got ${positionals.length}: ${positionals.join(' ')}`);
  const input: Record<string, unknown> = { version: positionals[0], model: opts.model };
  if (opts.percent !== undefined) input.percent = Number(opts.percent);
  if (opts.bake !== undefined) input.bake = opts.bake;
  if (opts.interval !== undefined) input.interval = opts.interval;
  if (opts.notify !== undefined) input.notify = opts.notify.split(',').map((s) => s.trim()).filter(Boolean);
  const problems = releaseInputProblems(input);
  if (problems.length) throw new UsageError(`marquee release: ${problems.join('\n  ')}`);
  const cfg = loadConfig();
  const client = await connectClient(cfg);
  try {
    // One release bakes at a time; the workflow refuses a second one too, this just says so sooner.
    for await (const w of client.workflow.list({ query: `WorkflowType = 'CanaryRelease' AND ExecutionStatus = 'Running'` })) {
      console.error(`marquee release: ${w.workflowId} is still running; abort it first (marquee abort ${w.workflowId.replace(/^release-/, '')} --reason ...)`);
      return 1;
    }
    const workflowId = `release-${input.version}`;
    const handle = await client.workflow.start('CanaryRelease', { taskQueue: cfg.temporal.taskQueue, workflowId, args: [input as unknown as ReleaseInput] });
    console.log(`started ${workflowId} (run ${handle.firstExecutionRunId})`);
    console.log(`  follow: marquee status ${input.version}   UI: http://127.0.0.1:${cfg.temporal.uiPort}/namespaces/${cfg.temporal.namespace}/workflows/${workflowId}`);
    console.log(`  abort:  marquee abort ${input.version} --reason "..."`);
    if (opts.wait) {
      const outcome = (await handle.result()) as ReleaseOutcome;
      console.log(`${outcome.version}: ${outcome.decision.toUpperCase()} — ${outcome.reason}`);
      return outcome.decision === 'promoted' ? 0 : 1;
    }
    return 0;
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) {
      console.error(`marquee release: release-${input.version} exists already; a version is released once — choose a new version`);
      return 1;
    }
    throw err;
  } finally {
    await client.connection.close();
  }
}

/** `marquee abort <version> --reason` (signal), or with mode 'promote' the promote update. */
export function abortCommand(args: string[], mode: 'abort' | 'promote' = 'abort'): Promise<number> {
  return withUsage(`${mode} <version> --reason "..."`, () => endRelease(args, mode));
}

async function endRelease(args: string[], mode: 'abort' | 'promote'): Promise<number> {
  const { positionals, values: opts } = parseOptions(args, { reason: { type: 'string' } });
  const version = positionals[0];
  if (!version || positionals.length > 1) throw new UsageError('give one release version');
  const cfg = loadConfig();
  const client = await connectClient(cfg);
  try {
    const handle = client.workflow.getHandle(`release-${version}`);
    const reason = opts.reason ?? 'no reason given';
    if (mode === 'abort') {
      await handle.signal(abortSignal, { reason, by: who() });
      console.log(`abort sent to release-${version}: traffic goes back to main and nightly is removed`);
    } else {
      try {
        console.log(await handle.executeUpdate(promoteUpdate, { args: [{ reason, by: who() }] }));
      } catch (err) {
        const cause = (err as { cause?: Error }).cause;
        console.error(`marquee promote: ${cause?.message ?? (err as Error).message}`);
        return 1;
      }
    }
    return 0;
  } finally {
    await client.connection.close();
  }
}

function printStatus(s: ReleaseStatus): void {
  console.log(`release ${s.version} (${s.model}), ${s.percent}% to nightly: phase ${s.phase}${s.decision ? `, ${s.decision}: ${s.reason}` : ''}`);
  for (const [phase, at] of Object.entries(s.phaseTimes)) console.log(`  ${at}  ${phase}`);
  if (s.bakeEndsAt && s.phase === 'baking') console.log(`  bake ends ${s.bakeEndsAt}${s.extended ? ' (extended once)' : ''}`);
  if (s.lastGuardrail) {
    console.log(`  guardrails: ${s.guardrailChecks} checks, ${s.consecutiveGuardrailFailures} failing in a row; last ${s.lastGuardrail.ok ? 'ok' : s.lastGuardrail.violations.join('; ')}`);
    console.log(`    ${Object.entries(s.lastGuardrail.numbers).map(([k, v]) => `${k}=${v}`).join('  ')}`);
  }
  if (s.offline) console.log(`  offline gate: ${s.offline.passed ? 'passed' : 'NOT passed'} — ${s.offline.reason}`);
  if (s.judge) console.log(`  judge: ${s.judge.verdict} — ${s.judge.reason}\n${s.judge.table.replace(/^/gm, '    ')}`);
}

export function statusCommand(args: string[]): Promise<number> {
  return withUsage('status [<version>] [--json]', () => status(args));
}

async function status(args: string[]): Promise<number> {
  const { positionals: positional, values: opts } = parseOptions(args, { json: { type: 'boolean' } });
  const cfg = loadConfig();
  const client = await connectClient(cfg);
  const out: { releases: ReleaseStatus[]; routing?: unknown; lastRelease?: unknown } = { releases: [] };
  try {
    const ids: string[] = [];
    if (positional[0]) ids.push(`release-${positional[0]}`);
    else for await (const w of client.workflow.list({ query: `WorkflowType = 'CanaryRelease' AND ExecutionStatus = 'Running'` })) ids.push(w.workflowId);
    for (const id of ids) out.releases.push(await client.workflow.getHandle(id).query(statusQuery));
  } finally {
    await client.connection.close();
  }
  try { out.routing = await gatewayAdmin(cfg).get(who()); } catch (err) { out.routing = `gateway not answering: ${(err as Error).message}`; }
  if (out.releases.length === 0) {
    const pool = createPool(cfg, { max: 1 });
    try {
      const { rows } = await pool.query('SELECT id, model_spec, phase, decision, reason, started_at, ended_at FROM releases ORDER BY started_at DESC LIMIT 1');
      out.lastRelease = rows[0] ?? null;
    } finally {
      await pool.end();
    }
  }
  if (opts.json) { console.log(JSON.stringify(out, null, 2)); return 0; }
  if (out.releases.length === 0) console.log(`no release in flight; last: ${out.lastRelease ? JSON.stringify(out.lastRelease) : 'none'}`);
  for (const s of out.releases) printStatus(s);
  console.log(`routing: ${typeof out.routing === 'string' ? out.routing : JSON.stringify(out.routing)}`);
  return 0;
}
