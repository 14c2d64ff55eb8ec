/**
 * Reconcile on the real servers, on the release rig (tests/support/release-rig.ts): the Temporal dev
 * server, Postgres (a scratch database), the real gateway process in front of a contract stub as
 * main, a real SMTP server on loopback, and a worker with the real activities. Nightly is a contract
 * stub process started and stopped by the slot runtime (a real inference slot needs vectors and a
 * warm model; docker.test.ts and the end-to-end test cover those). The offline gate is passed over
 * for the same reason: it is not under test here.
 *
 * A release is terminated in the middle of its bake, as an operator would in the Temporal UI, and
 * each way of reconciling it is shown: `marquee abort`, the next release's beginRelease, and the
 * reconcile Schedule.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WorkflowHandle } from '@temporalio/client';
import { stop } from '../testkit/processes.ts';
import { runMarquee } from './support/cli.ts';
import { releaseRig, until } from './support/release-rig.ts';
import type { StubProc } from './support/upstream.ts';

// Before anything loads the config: this file, the worker's activities and the CLI child processes share it.
const rig = await releaseRig('reconcile');
const { applyReconcileSchedule } = await import('../cli/release.ts');

const { cfg, tag } = rig;

const cli = (...args: string[]) => runMarquee(args);

/** Starts a release with a long bake and waits until nightly has its share. */
async function releaseIntoBake(version: string): Promise<WorkflowHandle> {
  const handle = await rig.client.workflow.start('CanaryRelease', {
    taskQueue: cfg.temporal.taskQueue, workflowId: `release-${version}`,
    args: [{ version, model: 'models/affinity-v1.json', percent: 20, bake: '2h', interval: '30m' }],
  });
  await until(`${version} baking`, async () => (await rig.row(version))?.phase === 'baking');
  expect(await rig.routing()).toMatchObject({ nightly_percent: 20, release_id: version });
  expect(rig.nightly()?.deployedVersion).toBe(version);
  return handle;
}

/** Everything the abort's cleanup must have left behind for a reconciled release. */
async function expectReconciled(version: string, nightly: StubProc) {
  expect(await rig.routing()).toMatchObject({ nightly_percent: 0, release_id: null, nightly_url: null });
  expect(await rig.servedBy(60)).toEqual(new Set(['main']));
  expect(nightly.proc.exitCode !== null || nightly.proc.signalCode !== null).toBe(true);
  expect(rig.nightly()).toBeUndefined();
  const r = (await rig.row(version))!;
  expect(r).toMatchObject({ phase: 'aborted', decision: 'terminated' });
  expect(r.reason).toMatch(new RegExp(`workflow release-${version} \\(run [0-9a-f-]+\\) terminated in phase baking: operator pressed Terminate; reconciled`));
  expect(r.ended_at).not.toBeNull();
  const mail = await until(`the mail for ${version}`, async () => rig.mails.find((m) => m.includes(`[marquee] release ${version}: TERMINATED (reconciled)`)));
  expect(mail).toMatch(/traffic back to main: yes/);
}

describe('reconcile after terminate, on the real servers', () => {
  beforeAll(() => rig.start(), 180_000);
  afterAll(() => rig.stop(), 120_000);

  it('marquee abort on a terminated release reconciles it: traffic back to main, nightly removed, row terminated, mailed', async () => {
    const handle = await releaseIntoBake(`t1-${tag}`);
    expect(await rig.servedBy(60)).toEqual(new Set(['main', 'nightly']));
    const nightly = rig.nightly()!;
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
    const nightly = rig.nightly()!;
    await stuck.terminate('operator pressed Terminate');
    const next = await releaseIntoBake(`t3-${tag}`);
    // t2's nightly went away and main took all traffic before t3 routed its own share.
    expect(nightly.proc.exitCode !== null || nightly.proc.signalCode !== null).toBe(true);
    expect(await rig.row(`t2-${tag}`)).toMatchObject({ phase: 'aborted', decision: 'terminated' });
    const { rows } = await rig.pool.query(`SELECT (after->>'nightlyPercent')::int AS percent, after->>'releaseId' AS release FROM routing_changes ORDER BY id`);
    const last3 = rows.slice(-3).map((r) => `${r.percent}:${r.release}`);
    expect(last3).toEqual([`20:t2-${tag}`, '0:null', `20:t3-${tag}`]);
    await until('the mail for t2', async () => rig.mails.find((m) => m.includes(`release t2-${tag}: TERMINATED (reconciled)`)));

    // A second release while t3 runs fails at once; status says how it closed and why.
    const refused = await rig.client.workflow.start('CanaryRelease', {
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
    expect(await rig.routing()).toMatchObject({ nightly_percent: 0, release_id: null });
  }, 240_000);

  it('the reconcile Schedule cleans up a terminated release without anyone asking', async () => {
    const scheduleId = `reconcile-test-${tag}`;
    const applied = await applyReconcileSchedule(cfg, { client: rig.client, scheduleId, taskQueue: cfg.temporal.taskQueue });
    expect(applied).toMatchObject({ result: 'created', interval: '2m' });
    const schedule = rig.client.schedule.getHandle(scheduleId);
    try {
      expect((await applyReconcileSchedule(cfg, { client: rig.client, scheduleId })).result).toBe('updated');
      const handle = await releaseIntoBake(`t4-${tag}`);
      const nightly = rig.nightly()!;
      await handle.terminate('operator pressed Terminate');
      // The Schedule's next tick, brought forward.
      await schedule.trigger();
      await until('t4 reconciled by the schedule', async () => (await rig.row(`t4-${tag}`))?.decision === 'terminated', 90_000);
      await expectReconciled(`t4-${tag}`, nightly);
      const desc = await schedule.describe();
      expect(desc.action).toMatchObject({ type: 'startWorkflow', workflowType: 'ReconcileReleases' });
    } finally {
      await schedule.delete().catch(() => undefined);
    }
  }, 240_000);

  it('an abort while the gateway is down retries routing back until it answers; status says what it waits for', async () => {
    const handle = await releaseIntoBake(`t6-${tag}`);
    await stop(rig.gateway.proc);
    await handle.signal('abort', { reason: 'gateway maintenance', by: 'test' });
    const waiting = await until('status naming the retried step', async () => {
      const st = await cli('status', `t6-${tag}`);
      return /retrying: setRouting attempt [2-9]/.test(st.out) ? st.out : undefined;
    }, 90_000);
    expect(waiting).toMatch(/phase aborting/);
    expect(waiting).toMatch(/waiting for: all traffic back to main \(setRouting through the gateway admin API\) \(retried until it succeeds\)/);
    expect(waiting).toMatch(/last: gateway admin API: fetch failed: .*ECONNREFUSED/);
    expect(await rig.row(`t6-${tag}`)).toMatchObject({ phase: 'aborting' });
    await rig.startGateway();
    const outcome = await handle.result() as { decision: string; status: { waitingFor?: string } };
    expect(outcome.decision).toBe('aborted');
    expect(outcome.status.waitingFor).toBeUndefined();
    expect(await rig.routing()).toMatchObject({ nightly_percent: 0, release_id: null });
    expect(await rig.row(`t6-${tag}`)).toMatchObject({ phase: 'aborted', decision: 'aborted' });
    expect(rig.nightly()).toBeUndefined();
  }, 240_000);
});
