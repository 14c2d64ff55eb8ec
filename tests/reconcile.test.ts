/**
 * Reconcile on the real servers: the Temporal dev server, Postgres (a scratch database), the real
 * gateway process in front of a contract stub as main, a real SMTP server on loopback, and a worker
 * with the real activities. Nightly is a contract stub process started and stopped by the slot
 * runtime (a real inference slot needs vectors and a warm model; docker.test.ts and the end-to-end
 * test cover those). The offline gate is passed over for the same reason: it is not under test here.
 *
 * A release is terminated in the middle of its bake, as an operator would in the Temporal UI, and
 * each way of reconciling it is shown: `marquee abort`, the next release's beginRelease, and the
 * reconcile Schedule.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { catchMail, type MailCatcher } from '../testkit/mail.ts';
import { startGateway, type GatewayProc } from '../testkit/inference.ts';
import { freePort } from '../testkit/net.ts';
import { stop } from '../testkit/processes.ts';
import { startStub, type StubProc } from './support/upstream.ts';

Runtime.install({ logger: new DefaultLogger('WARN'), telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' } } } });

const tag = randomBytes(3).toString('hex');
const dbName = `marquee_reconcile_${tag}`;
const ports = { gateway: await freePort(), nightly: await freePort(), smtp: await freePort() };
// Before anything loads the config: this file, the worker's activities and the CLI child processes share it.
Object.assign(process.env, {
  MARQUEE_POSTGRES_URL: `postgresql://marquee@127.0.0.1:5432/${dbName}`,
  MARQUEE_TEMPORAL_TASKQUEUE: `reconcile-${tag}`,
  MARQUEE_SERVICES_GATEWAY_PORT: String(ports.gateway),
  MARQUEE_SERVICES_INFERENCENIGHTLY_PORT: String(ports.nightly),
  MARQUEE_SMTP_HOST: '127.0.0.1',
  MARQUEE_SMTP_PORT: String(ports.smtp),
  MARQUEE_SMTP_SECURE: 'false',
  MARQUEE_SMTP_TO: 'oncall@reconcile.test',
});

const { loadConfig, projectRoot } = await import('../lib/config.ts');
const { createPool, migrate } = await import('../lib/db.ts');
const { connectClient } = await import('../lib/temporal.ts');
const { createActivities, createActivityDeps } = await import('../activities/index.ts');
const { workflowsPath } = await import('../workers/worker.ts');
const { applyReconcileSchedule } = await import('../cli/release.ts');
const { requireStack } = await import('./support/servers.ts');
type SlotRuntime = import('../lib/runtime/slots.ts').SlotRuntime;
type SlotState = import('../lib/runtime/slots.ts').SlotState;
type Pool = import('../lib/db.ts').Pool;

const exec = promisify(execFile);
const cfg = loadConfig();
const admin = createPool(cfg, { database: 'postgres', max: 1 });
let pool: Pool;
let client: Client;
let gateway: GatewayProc;
let mainStub: StubProc;
let smtp: MailCatcher | undefined;
const mails: string[] = [];
let worker: Worker;
let workerRun: Promise<void>;
let closeDeps: () => Promise<void>;

/** Nightly as a contract stub process on the configured nightly port, as a runtime would run it. */
type NightlyStub = StubProc & { deployedVersion: string };
function stubRuntime(): SlotRuntime & { current: () => NightlyStub | undefined } {
  let nightly: NightlyStub | undefined;
  const state = (): SlotState | undefined => nightly && {
    slot: 'nightly', version: nightly.deployedVersion, model: 'stub', image: null, running: nightly.proc.exitCode === null, url: nightly.url, id: String(nightly.proc.pid),
  };
  return {
    kind: 'process',
    async deploy(d) {
      if (d.slot !== 'nightly') throw new Error('this test runs nightly only');
      if (nightly) await stop(nightly.proc);
      nightly = Object.assign(await startStub(d.version, ports.nightly), { deployedVersion: d.version });
      return state()!;
    },
    async remove(slot) {
      if (slot !== 'nightly' || !nightly) return false;
      await stop(nightly.proc);
      nightly = undefined;
      return true;
    },
    async describe(slot) { return slot === 'nightly' ? state() : undefined; },
    current: () => nightly,
  };
}
const runtime = stubRuntime();

async function cli(...args: string[]): Promise<{ code: number; out: string }> {
  try {
    const r = await exec(process.execPath, ['--import', 'tsx', 'cli/main.ts', ...args], { cwd: projectRoot, env: process.env, timeout: 120_000 });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? 1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

async function routing(): Promise<{ nightly_percent: number; release_id: string | null; nightly_url: string | null }> {
  return (await pool.query('SELECT nightly_percent, release_id, nightly_url FROM routing_state WHERE id = 1')).rows[0];
}

async function row(version: string) {
  return (await pool.query('SELECT phase, decision, reason, ended_at FROM releases WHERE id = $1', [version])).rows[0];
}

async function until<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Starts a release with a long bake and waits until nightly has its share. */
async function releaseIntoBake(version: string): Promise<WorkflowHandle> {
  const handle = await client.workflow.start('CanaryRelease', {
    taskQueue: cfg.temporal.taskQueue, workflowId: `release-${version}`,
    args: [{ version, model: 'models/affinity-v1.json', percent: 20, bake: '2h', interval: '30m' }],
  });
  await until(`${version} baking`, async () => (await row(version))?.phase === 'baking');
  expect(await routing()).toMatchObject({ nightly_percent: 20, release_id: version });
  expect(runtime.current()?.deployedVersion).toBe(version);
  return handle;
}

/** What a user sees through the gateway: which slot answered. */
async function servedBy(users: number): Promise<Set<string>> {
  const slots = new Set<string>();
  for (let u = 0; u < users; u++) {
    const r = await fetch(`${gateway.url}/recommend/${u}`);
    await r.text();
    slots.add(String(r.headers.get('x-marquee-slot')));
  }
  return slots;
}

/** Everything the abort's cleanup must have left behind for a reconciled release. */
async function expectReconciled(version: string, nightly: StubProc) {
  expect(await routing()).toMatchObject({ nightly_percent: 0, release_id: null, nightly_url: null });
  expect(await servedBy(60)).toEqual(new Set(['main']));
  expect(nightly.proc.exitCode !== null || nightly.proc.signalCode !== null).toBe(true);
  expect(runtime.current()).toBeUndefined();
  const r = await row(version);
  expect(r).toMatchObject({ phase: 'aborted', decision: 'terminated' });
  expect(r.reason).toMatch(new RegExp(`workflow release-${version} \\(run [0-9a-f-]+\\) terminated in phase baking: operator pressed Terminate; reconciled`));
  expect(r.ended_at).not.toBeNull();
  const mail = await until(`the mail for ${version}`, async () => mails.find((m) => m.includes(`[marquee] release ${version}: TERMINATED (reconciled)`)));
  expect(mail).toMatch(/traffic back to main: yes/);
}

describe('reconcile after terminate, on the real servers', () => {
  beforeAll(async () => {
    await requireStack(cfg, 'postgres', 'temporal');
    await admin.query(`CREATE DATABASE "${dbName}"`);
    pool = createPool(cfg, { max: 4 });
    await migrate(pool);
    smtp = await catchMail(ports.smtp, { into: mails });
    mainStub = await startStub(`main-${tag}`);
    gateway = await startGateway(cfg, dbName, mainStub.url, {}, ports.gateway);
    client = await connectClient(cfg);

    const deps = await createActivityDeps(cfg, { pool, runtime });
    closeDeps = () => deps.temporal.connection.close();
    const real = createActivities(deps);
    const connection = await NativeConnection.connect({ address: cfg.temporal.address });
    worker = await Worker.create({
      connection, namespace: cfg.temporal.namespace, taskQueue: cfg.temporal.taskQueue, workflowsPath,
      activities: {
        ...real,
        // Not under test here (they need vectors and a warm model): the gate passes, nightly is the stub.
        offlineGate: async () => ({ passed: true, reason: 'not evaluated in this test', table: '', numbers: {} }),
        deploySlot: async (a: Parameters<typeof real.deploySlot>[0]) => {
          const s = await runtime.deploy({ slot: a.slot, version: a.version, model: a.model, image: null });
          return { url: s.url, id: s.id };
        },
      },
    });
    workerRun = worker.run().finally(() => connection.close());
  }, 180_000);

  afterAll(async () => {
    if (worker?.getState() === 'RUNNING') worker.shutdown();
    await workerRun?.catch(() => undefined);
    await closeDeps?.();
    await client?.connection.close();
    await runtime.remove('nightly');
    await Promise.all([stop(gateway?.proc), stop(mainStub?.proc)]);
    await smtp?.close();
    await pool?.end();
    await admin.query(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`);
    await admin.end();
  }, 120_000);

  it('marquee abort on a terminated release reconciles it: traffic back to main, nightly removed, row terminated, mailed', async () => {
    const handle = await releaseIntoBake(`t1-${tag}`);
    expect(await servedBy(60)).toEqual(new Set(['main', 'nightly']));
    const nightly = runtime.current()!;
    await handle.terminate('operator pressed Terminate');

    const abort = await cli('abort', `t1-${tag}`, '--reason', 'it is stuck');
    expect(abort.out).toMatch(new RegExp(`release-t1-${tag} had already terminated \\(operator pressed Terminate\\); reconciled: traffic back to main, nightly removed, recorded as terminated, outcome mailed`));
    expect(abort.code).toBe(0);
    await expectReconciled(`t1-${tag}`, nightly);

    // status tells how the workflow closed, not the phase its history stopped in.
    const status = await cli('status', `t1-${tag}`);
    expect(status.out).toMatch(/last phase baking; workflow terminated at \S+: operator pressed Terminate/);
    expect(status.out).toMatch(/"decision":"terminated"/);

    // A second abort finds nothing left to do and says so.
    const again = await cli('abort', `t1-${tag}`, '--reason', 'again');
    expect(again.out).toMatch(/had already terminated .* and was cleaned up \(phase aborted, terminated: /);
  }, 240_000);

  it('the next release reconciles a terminated one itself (beginRelease), then bakes', async () => {
    const stuck = await releaseIntoBake(`t2-${tag}`);
    const nightly = runtime.current()!;
    await stuck.terminate('operator pressed Terminate');
    const next = await releaseIntoBake(`t3-${tag}`);
    // t2's nightly went away and main took all traffic before t3 routed its own share.
    expect(nightly.proc.exitCode !== null || nightly.proc.signalCode !== null).toBe(true);
    expect(await row(`t2-${tag}`)).toMatchObject({ phase: 'aborted', decision: 'terminated' });
    const { rows } = await pool.query(`SELECT (after->>'nightlyPercent')::int AS percent, after->>'releaseId' AS release FROM routing_changes ORDER BY id`);
    const last3 = rows.slice(-3).map((r) => `${r.percent}:${r.release}`);
    expect(last3).toEqual([`20:t2-${tag}`, '0:null', `20:t3-${tag}`]);
    await until('the mail for t2', async () => mails.find((m) => m.includes(`release t2-${tag}: TERMINATED (reconciled)`)));

    // A second release while t3 runs fails at once; status says how it closed and why.
    const refused = await client.workflow.start('CanaryRelease', {
      taskQueue: cfg.temporal.taskQueue, workflowId: `release-t5-${tag}`, args: [{ version: `t5-${tag}`, model: 'models/affinity-v1.json' }],
    });
    await expect(refused.result()).rejects.toThrow();
    const status = await cli('status', `t5-${tag}`);
    expect(status.out).toMatch(new RegExp(`workflow failed at \\S+: release t3-${tag} is in phase baking and its workflow is still running`));
    expect(status.out).not.toMatch(/: phase starting/);

    // The abort of a running release still goes through its own workflow.
    await next.signal('abort', { reason: 'end of test', by: 'test' });
    const outcome = await next.result() as { decision: string };
    expect(outcome.decision).toBe('aborted');
    expect(await routing()).toMatchObject({ nightly_percent: 0, release_id: null });
  }, 240_000);

  it('the reconcile Schedule cleans up a terminated release without anyone asking', async () => {
    const scheduleId = `reconcile-test-${tag}`;
    const applied = await applyReconcileSchedule(cfg, { client, scheduleId, taskQueue: cfg.temporal.taskQueue });
    expect(applied).toMatchObject({ result: 'created', interval: '2m' });
    const schedule = client.schedule.getHandle(scheduleId);
    try {
      expect((await applyReconcileSchedule(cfg, { client, scheduleId })).result).toBe('updated');
      const handle = await releaseIntoBake(`t4-${tag}`);
      const nightly = runtime.current()!;
      await handle.terminate('operator pressed Terminate');
      // The Schedule's next tick, brought forward.
      await schedule.trigger();
      await until('t4 reconciled by the schedule', async () => (await row(`t4-${tag}`))?.decision === 'terminated', 90_000);
      await expectReconciled(`t4-${tag}`, nightly);
      const desc = await schedule.describe();
      expect(desc.action).toMatchObject({ type: 'startWorkflow', workflowType: 'ReconcileReleases' });
    } finally {
      await schedule.delete().catch(() => undefined);
    }
  }, 240_000);

  it('an abort while the gateway is down retries routing back until it answers; status says what it waits for', async () => {
    const handle = await releaseIntoBake(`t6-${tag}`);
    await stop(gateway.proc);
    await handle.signal('abort', { reason: 'gateway maintenance', by: 'test' });
    const waiting = await until('status naming the retried step', async () => {
      const st = await cli('status', `t6-${tag}`);
      return /retrying: setRouting attempt [2-9]/.test(st.out) ? st.out : undefined;
    }, 90_000);
    expect(waiting).toMatch(/phase aborting/);
    expect(waiting).toMatch(/waiting for: all traffic back to main \(setRouting through the gateway admin API\) \(retried until it succeeds\)/);
    expect(waiting).toMatch(/last: gateway admin API: fetch failed: .*ECONNREFUSED/);
    expect(await row(`t6-${tag}`)).toMatchObject({ phase: 'aborting' });
    gateway = await startGateway(cfg, dbName, mainStub.url, {}, ports.gateway);
    const outcome = await handle.result() as { decision: string; status: { waitingFor?: string } };
    expect(outcome.decision).toBe('aborted');
    expect(outcome.status.waitingFor).toBeUndefined();
    expect(await routing()).toMatchObject({ nightly_percent: 0, release_id: null });
    expect(await row(`t6-${tag}`)).toMatchObject({ phase: 'aborted', decision: 'aborted' });
    expect(runtime.current()).toBeUndefined();
  }, 240_000);
});
