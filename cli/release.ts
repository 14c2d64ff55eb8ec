import os from 'node:os';
import { ScheduleAlreadyRunning, ScheduleOverlapPolicy, WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import { loadConfig, type Config } from '../lib/config.ts';
import { createPool } from '../lib/db.ts';
import { gatewayAdmin } from '../lib/gateway-client.ts';
import { releaseInputProblems, type ReleaseInput } from '../lib/release/input.ts';
import { closeDecision, RECONCILE_EVERY, reconcileWorkflowId, RECONCILE_SCHEDULE_ID, type ReconcileResult, type WorkflowState } from '../lib/release/reconcile.ts';
import { TERMINAL_PHASES, type ReleaseOutcome, type ReleaseStatus } from '../lib/release/types.ts';
import { reconcileNow, workflowState } from '../lib/release/workflow-state.ts';
import { connectClient } from '../lib/temporal.ts';
import { abortSignal, promoteUpdate, statusQuery } from '../workflows/canary.ts';
import { parseOptions, UsageError, withUsage } from './args.ts';

const releaseUsage = 'release <version> --model models/<spec>.json [--percent N | --steps 5,20,50] [--bake 12h] [--interval 30m] [--notify a@b,...] [--wait]';

const who = () => { try { return os.userInfo().username; } catch { return 'operator'; } };

export function releaseCommand(args: string[]): Promise<number> {
  return withUsage(releaseUsage, () => release(args));
}

async function release(args: string[]): Promise<number> {
  const { positionals, values: opts } = parseOptions(args, {
    model: { type: 'string' }, percent: { type: 'string' }, steps: { type: 'string' }, bake: { type: 'string' }, interval: { type: 'string' },
    notify: { type: 'string' }, wait: { type: 'boolean' },
  });
  if (positionals.length > 1) throw new UsageError(`one version, got ${positionals.length}: ${positionals.join(' ')}`);
  const input: Record<string, unknown> = { version: positionals[0], model: opts.model };
  if (opts.percent !== undefined) input.percent = Number(opts.percent);
  // Non-numbers stay as they are, so the validation names them (`steps: must be ... (got [5,"x"])`).
  if (opts.steps !== undefined) input.steps = opts.steps.split(',').map((x) => x.trim()).map((x) => (/^\d+$/.test(x) ? Number(x) : x));
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
      const s = await withTimeout(client.workflow.getHandle(w.workflowId).query(statusQuery), 10_000).catch(() => undefined);
      // Decided and cleaned up, only retrying what comes last (the outcome record or mail): no longer in the way.
      if (s && TERMINAL_PHASES.includes(s.phase)) {
        console.error(`note: ${w.workflowId} is ${s.phase} and still retrying ${s.waitingFor ?? 'its last step'}`);
        continue;
      }
      const waiting = s?.waitingFor ? ` (waiting for ${s.waitingFor})` : '';
      console.error(`marquee release: ${w.workflowId} is still running${waiting}; abort it first (marquee abort ${w.workflowId.replace(/^release-/, '')} --reason ...)`);
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
    const workflowId = `release-${version}`;
    const handle = client.workflow.getHandle(workflowId);
    const reason = opts.reason ?? 'no reason given';
    const state = await workflowState(client, workflowId);
    if (state.status === 'NOT_FOUND') {
      console.error(`marquee ${mode}: there is no workflow ${workflowId} (marquee status lists the release in flight)`);
      return 1;
    }
    if (state.status !== 'RUNNING') {
      // Its own cleanup may never have run (terminated from the UI, say): reconcile does it.
      if (mode === 'promote') {
        console.error(`marquee promote: ${workflowId} is closed (${closeDecision(state)}${state.closeReason ? `: ${state.closeReason}` : ''}); nothing to promote`);
        return 1;
      }
      return await reconcileAndSay(cfg, client, version, state);
    }
    if (mode === 'abort') {
      const before = await handle.query(statusQuery).catch(() => undefined);
      await handle.signal(abortSignal, { reason, by: who() });
      if (before?.phase === 'promoting' || before?.decision === 'promoted') {
        console.log(`abort sent to ${workflowId}, but it is promoting: an abort is not applied once the promotion has begun; the promotion finishes (see README, operator guide)`);
      } else {
        console.log(`abort sent to ${workflowId}: traffic goes back to main and nightly is removed`);
      }
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

/** How long the CLI waits for a reconcile before telling the operator where to follow it. */
const RECONCILE_WAIT_MS = 60_000;

/** Runs a reconcile and prints what it did; the answer of `marquee abort` for a closed workflow. */
async function reconcileAndSay(cfg: Config, client: Client, version: string, state: WorkflowState): Promise<number> {
  const how = `${closeDecision(state)}${state.closeReason ? ` (${state.closeReason})` : ''}`;
  const results = await runReconcile(cfg, client, `marquee abort ${version}`);
  if (results === undefined) return 1;
  const mine = results.find((r) => r.version === version);
  if (mine) {
    console.log(`release-${version} had already ${how}; reconciled: ${sayReconciled(mine)}`);
    return 0;
  }
  const pool = createPool(cfg, { max: 1 });
  try {
    const { rows } = await pool.query('SELECT phase, decision, reason FROM releases WHERE id = $1', [version]);
    const row = rows[0] ? `phase ${rows[0].phase}, ${rows[0].decision ?? 'no decision'}: ${rows[0].reason ?? ''}` : 'no releases row';
    console.log(`release-${version} had already ${how} and was cleaned up (${row}); nothing to abort`);
  } finally {
    await pool.end();
  }
  return 0;
}

export function sayReconciled(r: ReconcileResult): string {
  return [r.routedBack ? 'traffic back to main' : 'routing left alone (a running release owns it)',
    r.nightlyRemoved ? 'nightly removed' : 'nightly left alone (a running release owns it)',
    `recorded as ${r.decision}`, r.mailed ? 'outcome mailed' : 'finished by another reconcile'].join(', ');
}

/**
 * Runs ReconcileReleases on the worker and waits up to a minute; prints why when it does not
 * finish (a cleanup step being retried, or no worker) and returns undefined then.
 */
export async function runReconcile(cfg: Config, client: Client, by: string): Promise<ReconcileResult[] | undefined> {
  const results = await reconcileNow(client, { taskQueue: cfg.temporal.taskQueue, by: `${by} by ${who()}`, waitMs: RECONCILE_WAIT_MS });
  if (results === undefined) {
    console.error(`reconcile has not finished within ${RECONCILE_WAIT_MS / 1000} s (is a worker polling ${cfg.temporal.taskQueue}? it retries its cleanup until it succeeds); follow it with: temporal workflow query --workflow-id ${reconcileWorkflowId(cfg.temporal.taskQueue)} --name status`);
  }
  return results;
}

/** Creates the reconcile Schedule (every RECONCILE_EVERY), or updates it to match; says which. */
export async function applyReconcileSchedule(cfg: Config, opts: { client?: Client; scheduleId?: string; taskQueue?: string } = {}): Promise<{ scheduleId: string; interval: string; result: 'created' | 'updated' }> {
  const client = opts.client ?? await connectClient(cfg);
  const scheduleId = opts.scheduleId ?? RECONCILE_SCHEDULE_ID;
  const spec = { intervals: [{ every: RECONCILE_EVERY }] };
  const action = {
    type: 'startWorkflow' as const, workflowType: 'ReconcileReleases', workflowId: scheduleId,
    taskQueue: opts.taskQueue ?? cfg.temporal.taskQueue, args: [{ by: 'schedule' }],
  };
  // A reconcile still retrying its cleanup when the next is due is left to finish.
  const policies = { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '10 minutes' };
  try {
    try {
      await client.schedule.create({ scheduleId, spec, action, policies, memo: { source: 'marquee schedules apply (lib/release/reconcile.ts)' } });
      return { scheduleId, interval: RECONCILE_EVERY, result: 'created' };
    } catch (err) {
      if (!(err instanceof ScheduleAlreadyRunning)) throw err;
      await client.schedule.getHandle(scheduleId).update((prev) => ({ ...prev, spec, action, policies: { ...prev.policies, ...policies } }));
      return { scheduleId, interval: RECONCILE_EVERY, result: 'updated' };
    }
  } finally {
    if (!opts.client) await client.connection.close();
  }
}

function printStatus(s: ReleaseStatus, closed?: WorkflowState): void {
  // A closed workflow's query replays its history: its phase is where it stopped, not where it is.
  const how = closed ? `; workflow ${closeDecision(closed)}${closed.closeTime ? ` at ${closed.closeTime}` : ''}${closed.closeReason ? `: ${closed.closeReason}` : ''}` : '';
  const step = s.steps && s.steps.length > 1 ? ` at step ${s.step ?? 0} of ${s.steps.length} (${s.steps.join(' → ')} %)` : '';
  console.log(`release ${s.version} (${s.model}), ${s.percent}% to nightly${step}: ${closed ? 'last phase' : 'phase'} ${s.phase}${s.decision ? `, ${s.decision}: ${s.reason}` : ''}${how}`);
  for (const [phase, at] of Object.entries(s.phaseTimes)) console.log(`  ${at}  ${phase}`);
  if (s.bakeEndsAt && s.phase === 'baking' && !closed) console.log(`  bake ends ${s.bakeEndsAt}${s.extended ? ' (extended once)' : ''}`);
  if (s.waitingFor && !closed) console.log(`  waiting for: ${s.waitingFor} (retried until it succeeds)`);
  if (s.abortNotApplied) console.log(`  ${s.abortNotApplied}`);
  if (s.lastGuardrail) {
    console.log(`  guardrails: ${s.guardrailChecks} checks, ${s.consecutiveGuardrailFailures} failing in a row; last ${s.lastGuardrail.ok ? 'ok' : s.lastGuardrail.violations.join('; ')}`);
    console.log(`    ${Object.entries(s.lastGuardrail.numbers).map(([k, v]) => `${k}=${v}`).join('  ')}`);
  }
  if (s.offline) console.log(`  offline gate: ${s.offline.passed ? 'passed' : 'NOT passed'} — ${s.offline.reason}`);
  if (s.judge) console.log(`  judge: ${s.judge.verdict} — ${s.judge.reason}\n${s.judge.table.replace(/^/gm, '    ')}`);
}

/** The pending activity's attempt and last failure, e.g. "attempt 7, last: connect ECONNREFUSED …". */
async function retrying(client: Client, workflowId: string): Promise<string | undefined> {
  const d = await client.workflow.getHandle(workflowId).describe();
  const a = d.raw.pendingActivities?.find((p) => (p.attempt ?? 1) > 1);
  if (!a) return undefined;
  const last = a.lastFailure?.cause?.message || a.lastFailure?.message;
  return `${a.activityType?.name ?? 'activity'} attempt ${a.attempt}${last ? `, last: ${last}` : ''}`;
}

export function statusCommand(args: string[]): Promise<number> {
  return withUsage('status [<version>] [--json]', () => status(args));
}

interface StatusEntry { workflowId: string; workflow: WorkflowState; status?: ReleaseStatus; retrying?: string; row?: unknown }

async function status(args: string[]): Promise<number> {
  const { positionals: positional, values: opts } = parseOptions(args, { json: { type: 'boolean' } });
  const cfg = loadConfig();
  const client = await connectClient(cfg);
  const out: { releases: StatusEntry[]; routing?: unknown; lastRelease?: unknown } = { releases: [] };
  const pool = createPool(cfg, { max: 1 });
  try {
    const ids: string[] = [];
    if (positional[0]) ids.push(`release-${positional[0]}`);
    else for await (const w of client.workflow.list({ query: `WorkflowType = 'CanaryRelease' AND ExecutionStatus = 'Running'` })) ids.push(w.workflowId);
    for (const id of ids) {
      const workflow = await workflowState(client, id);
      if (workflow.status === 'NOT_FOUND') {
        out.releases.push({ workflowId: id, workflow });
        continue;
      }
      const entry: StatusEntry = { workflowId: id, workflow };
      // A closed run answers the query by replaying on a worker; without one it cannot.
      entry.status = await withTimeout(client.workflow.getHandle(id).query(statusQuery), 10_000).catch(() => undefined);
      if (workflow.status === 'RUNNING') entry.retrying = await retrying(client, id).catch(() => undefined);
      const { rows } = await pool.query('SELECT id, phase, decision, reason, started_at, ended_at FROM releases WHERE workflow_id = $1 ORDER BY started_at DESC LIMIT 1', [id]);
      entry.row = rows[0] ?? null;
      out.releases.push(entry);
    }
    if (out.releases.length === 0) {
      const { rows } = await pool.query('SELECT id, model_spec, phase, decision, reason, started_at, ended_at FROM releases ORDER BY started_at DESC LIMIT 1');
      out.lastRelease = rows[0] ?? null;
    }
  } finally {
    await client.connection.close();
    await pool.end();
  }
  try { out.routing = await gatewayAdmin(cfg).get(who()); } catch (err) { out.routing = `gateway not answering: ${(err as Error).message}`; }
  if (opts.json) { console.log(JSON.stringify(out, null, 2)); return 0; }
  if (out.releases.length === 0) console.log(`no release in flight; last: ${out.lastRelease ? JSON.stringify(out.lastRelease) : 'none'}`);
  for (const e of out.releases) {
    const closed = e.workflow.status === 'RUNNING' ? undefined : e.workflow;
    if (e.workflow.status === 'NOT_FOUND') console.log(`${e.workflowId}: no such workflow`);
    else if (e.status) printStatus(e.status, closed);
    else console.log(`${e.workflowId}: workflow ${closeDecision(e.workflow)}${e.workflow.closeReason ? `: ${e.workflow.closeReason}` : ''} (no worker answered the status query)`);
    if (e.retrying) console.log(`  retrying: ${e.retrying}`);
    if (e.row) console.log(`  releases row: ${JSON.stringify(e.row)}`);
  }
  console.log(`routing: ${typeof out.routing === 'string' ? out.routing : JSON.stringify(out.routing)}`);
  return 0;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<T>((_, reject) => { timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms); })])
    .finally(() => clearTimeout(timer));
}
