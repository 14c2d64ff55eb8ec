import { readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, WorkflowFailedError } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils.js';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, DefaultLogger, Runtime, Worker, type WorkflowBundle } from '@temporalio/worker';
import { testServerBinary } from '../stack/components/venv.ts';
import { workflowsPath } from '../workers/worker.ts';
import { abortSignal, CanaryRelease, promoteUpdate, statusQuery } from '../workflows/canary.ts';
import type { ReleaseInput } from '../lib/release/input.ts';
import type { ReleaseOutcome, ReleaseStatus } from '../lib/release/types.ts';
import { reconcileWorkflowId } from '../lib/release/reconcile.ts';
import { reconcileNow } from '../lib/release/workflow-state.ts';
import { fakeActivities, fakeWorld, type Scenario } from './support/canary-fakes.ts';
import { COMMITTED_HISTORIES, committedHistory, historiesDir, recordHistory, type HistoryName } from './support/histories.ts';

Runtime.install({ logger: new DefaultLogger('WARN'), telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' } } } });

let env: TestWorkflowEnvironment;
let bundle: WorkflowBundle;
let n = 0;

/** Runs one release on the time-skipping server with scripted activities; saves its history once. */
async function release(scenario: Scenario, input: Partial<ReleaseInput>, during?: (h: Awaited<ReturnType<typeof env.client.workflow.start>>) => Promise<void>, historyName?: HistoryName) {
  const fakes = fakeActivities(scenario);
  const taskQueue = `canary-test-${process.pid}-${++n}`;
  const worker = await Worker.create({ connection: env.nativeConnection, taskQueue, workflowBundle: bundle, activities: fakes.activities });
  const full: ReleaseInput = { version: `v${n}`, model: 'models/affinity-v1.json', ...input };
  const outcome = await worker.runUntil(async () => {
    const handle = await env.client.workflow.start(CanaryRelease, { taskQueue, workflowId: `release-${full.version}-${n}`, args: [full] });
    let result: ReleaseOutcome | Error;
    try {
      if (during) await during(handle);
      result = await handle.result();
    } catch (err) {
      result = err as Error;
      // A run left open would hold the test server's clock for every later test.
      await handle.terminate('test failed').catch(() => undefined);
    }
    if (historyName) recordHistory(historyName, historyToJSON(await handle.fetchHistory()));
    return result;
  });
  return { outcome, fakes };
}

async function waitForPhase(h: { query: (q: typeof statusQuery) => Promise<ReleaseStatus> }, phase: ReleaseStatus['phase']): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if ((await h.query(statusQuery)).phase === phase) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`the release never reached phase ${phase}`);
}

/**
 * Waits until the server has the bake's timer in the history: the workflow task that entered the
 * bake is completed, not just answered in a query from the worker's cache. Terminating a run while
 * its workflow task is still in flight leaks one of the test server's time-skipping locks (seen
 * under load: the clock then stood still for this test and every later one).
 */
async function waitForBakeTimer(h: { fetchHistory: () => Promise<{ events?: { eventType?: unknown }[] | null }> }): Promise<void> {
  const TIMER_STARTED = 17; // temporal.api.enums.v1.EventType.EVENT_TYPE_TIMER_STARTED
  for (let i = 0; i < 400; i++) {
    if ((await h.fetchHistory()).events?.some((e) => Number(e.eventType) === TIMER_STARTED)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('the bake timer never reached the history');
}

describe('CanaryRelease on the time-skipping test server', () => {
  beforeAll(async () => {
    env = await TestWorkflowEnvironment.createTimeSkipping({ server: { executable: { type: 'existing-path', path: testServerBinary() } } });
    // The dev server registers these at start (stack/components/temporal.ts); the test server is told here.
    const KEYWORD = 2; // temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
    await env.connection.operatorService.addSearchAttributes({ namespace: 'default', searchAttributes: { MarqueePhase: KEYWORD, MarqueeVersion: KEYWORD } });
    bundle = await bundleWorkflowCode({ workflowsPath, logger: new DefaultLogger('WARN') });
  });
  afterAll(async () => { await env?.teardown(); });

  it('runs the full 12h path and promotes when the judge says Successful', async () => {
    const { outcome, fakes } = await release({}, {}, undefined, 'canary-promote');
    expect(outcome).not.toBeInstanceOf(Error);
    const o = outcome as ReleaseOutcome;
    expect(o.decision).toBe('promoted');
    expect(fakes.names().filter((x) => x !== 'recordPhase')).toEqual([
      'beginRelease', 'offlineGate', 'buildInferenceImage', 'deploySlot', 'setRouting',
      ...Array(24).fill('checkGuardrails'), 'judgeRelease', 'promoteSlot', 'finishRelease', 'notifyReleaseOutcome',
    ]);
    expect(fakes.routing).toEqual([{ percent: 20, releaseId: 'v1' }]);
    expect(o.status.guardrailChecks).toBe(24); // every 30 min over 12 h
    expect(fakes.mails[0].status?.decision).toBe('promoted');
    expect(Object.keys(o.status.phaseTimes)).toEqual(['offline-eval', 'building', 'deploying', 'routing', 'baking', 'online-eval', 'promoting', 'promoted']);
  });

  it('an abort signal during the bake ends it at once: traffic back to main, nightly removed, mail sent', async () => {
    const { outcome, fakes } = await release({}, { bake: '12h' }, async (h) => {
      for (;;) {
        const s = await h.query(statusQuery);
        if (s.phase === 'baking') break;
        await new Promise((r) => setTimeout(r, 50));
      }
      await h.signal(abortSignal, { reason: 'bad dashboards', by: 'alice' });
    }, 'canary-abort-signal');
    const o = outcome as ReleaseOutcome;
    expect(o.decision).toBe('aborted');
    expect(o.reason).toContain('aborted by alice: bad dashboards');
    expect(fakes.names()).not.toContain('judgeRelease');
    expect(fakes.names()).not.toContain('promoteSlot');
    expect(fakes.routing.at(-1)).toEqual({ percent: 0, releaseId: null });
    expect(fakes.slots.has('nightly')).toBe(false);
    expect(fakes.mails[0].status?.decision).toBe('aborted');
  });

  it('aborts automatically after the configured number of consecutive guardrail failures', async () => {
    const { outcome, fakes } = await release({ guardrails: (i) => i < 5 }, {}, undefined, 'canary-guardrails');
    const o = outcome as ReleaseOutcome;
    expect(o.decision).toBe('aborted');
    expect(o.reason).toMatch(/guardrails failed 3 times in a row/);
    expect(fakes.names().filter((x) => x === 'checkGuardrails')).toHaveLength(7);
    expect(fakes.routing.at(-1)?.percent).toBe(0);
  });

  it('Inconclusive extends the bake once, then promotes on Successful', async () => {
    const { outcome, fakes } = await release({ verdicts: ['Inconclusive', 'Successful'] }, {}, undefined, 'canary-inconclusive');
    const o = outcome as ReleaseOutcome;
    expect(o.decision).toBe('promoted');
    expect(o.status.extended).toBe(true);
    // 12 h + 6 h extension at 30 min intervals.
    expect(fakes.names().filter((x) => x === 'checkGuardrails')).toHaveLength(36);
  });

  it('Inconclusive twice aborts', async () => {
    const { outcome } = await release({ verdicts: ['Inconclusive', 'Inconclusive'] }, {});
    expect((outcome as ReleaseOutcome).decision).toBe('aborted');
    expect((outcome as ReleaseOutcome).reason).toMatch(/still Inconclusive/);
  });

  it('Failed aborts', async () => {
    const { outcome, fakes } = await release({ verdicts: ['Failed'] }, {});
    expect((outcome as ReleaseOutcome).decision).toBe('aborted');
    expect(fakes.names()).not.toContain('promoteSlot');
  });

  it('an offline evaluation below the gate aborts before building', async () => {
    const { outcome, fakes } = await release({ offlinePassed: false }, {});
    expect((outcome as ReleaseOutcome).decision).toBe('aborted');
    expect(fakes.names()).not.toContain('buildInferenceImage');
  });

  it('a build failure fails the release, still cleans up and mails', async () => {
    const { outcome, fakes } = await release({ buildFails: true }, {}, undefined, 'canary-build-failure');
    expect(outcome).toBeInstanceOf(WorkflowFailedError);
    expect(String((outcome as WorkflowFailedError).cause?.message)).toMatch(/failed in phase building: image build failed: RUN exited with 7/);
    expect(fakes.names()).toContain('removeSlot');
    expect(fakes.mails[0].status?.decision).toBe('failed');
  });

  it('cleanup never gives up: routing back and the mail are retried past the old 10 attempts, and the status says what it waits for', async () => {
    let seen: ReleaseStatus | undefined;
    const { outcome, fakes } = await release({ routeBackFailures: 12, mailFailures: 12 }, {}, async (h) => {
      await waitForPhase(h, 'baking');
      await h.signal(abortSignal, { reason: 'gateway flaky', by: 'carol' });
      // Real time here (no result() pending), so the first retries of setRouting are still ahead.
      for (let i = 0; i < 200 && !seen; i++) {
        const s = await h.query(statusQuery);
        if (s.waitingFor?.includes('setRouting')) seen = s;
        else await new Promise((r) => setTimeout(r, 25));
      }
    }, 'canary-cleanup-retries');
    expect(seen?.phase).toBe('aborting');
    expect(seen?.waitingFor).toMatch(/all traffic back to main \(setRouting/);
    const o = outcome as ReleaseOutcome;
    expect(o.decision).toBe('aborted');
    expect(o.status.waitingFor).toBeUndefined();
    expect(o.status.mail).toBeUndefined();
    expect(fakes.calls.filter((c) => c.name === 'setRouting' && (c.args as { percent: number }).percent === 0)).toHaveLength(13);
    expect(fakes.names().filter((x) => x === 'notifyReleaseOutcome')).toHaveLength(13);
    expect(fakes.routing.at(-1)).toEqual({ percent: 0, releaseId: null });
    expect(fakes.slots.has('nightly')).toBe(false);
    expect(fakes.mails).toHaveLength(1);
    expect(fakes.mails[0].status?.decision).toBe('aborted');
  });

  it('an abort during promoting is answered, not applied: the promotion finishes and the outcome says so', async () => {
    let answered: ReleaseStatus | undefined;
    const { outcome, fakes } = await release({ promoteMs: 3000 }, { bake: '2s', interval: '1s' }, async (h) => {
      await waitForPhase(h, 'promoting');
      await h.signal(abortSignal, { reason: 'changed my mind', by: 'dave' });
      answered = await h.query(statusQuery);
    }, 'canary-abort-promoting');
    expect(answered?.abortNotApplied).toMatch(/aborted by dave: changed my mind — not applied: the promotion had begun/);
    const o = outcome as ReleaseOutcome;
    expect(o.decision).toBe('promoted');
    expect(o.reason).toMatch(/the judge says Successful.*; aborted by dave: changed my mind — not applied/);
    expect(fakes.slots.get('main')).toBe(o.version);
    expect(fakes.routing.some((r) => r.percent === 0)).toBe(false);
    expect(fakes.mails[0].status?.abortNotApplied).toMatch(/not applied/);
  });

  it('an abort during a promotion that then fails: rolled back as any failed promotion, and the reason says when the abort came', async () => {
    const { outcome, fakes } = await release({ promoteMs: 3000, promoteFails: true }, { bake: '2s', interval: '1s' }, async (h) => {
      await waitForPhase(h, 'promoting');
      await h.signal(abortSignal, { reason: 'changed my mind', by: 'dave' });
    });
    expect(outcome).toBeInstanceOf(WorkflowFailedError);
    const msg = String((outcome as WorkflowFailedError).cause?.message);
    expect(msg).toMatch(/^promotion failed: main did not become healthy with spec h; aborted by dave: changed my mind — arrived during the promotion, which failed and was rolled back$/);
    expect(fakes.routing.at(-1)).toEqual({ percent: 0, releaseId: null });
    expect(fakes.mails[0].status?.decision).toBe('failed');
  });

  it('the judge gets its asOf from the workflow: the bake\'s end in workflow time, the same on every attempt', async () => {
    const { outcome, fakes } = await release({ verdicts: ['Inconclusive', 'Successful'] }, {});
    const o = outcome as ReleaseOutcome;
    const asOfs = fakes.calls.filter((c) => c.name === 'judgeRelease').map((c) => (c.args as { asOf: string }).asOf);
    expect(asOfs).toHaveLength(2);
    const baking = Date.parse(o.status.phaseTimes['baking']!); // the extension's start
    // The second judgement's window ends where the 6 h extension ended, not when the judge ran.
    expect(Date.parse(asOfs[1])).toBe(Date.parse(o.status.bakeEndsAt!));
    expect(Date.parse(asOfs[1]) - baking).toBeGreaterThanOrEqual(6 * 3_600_000);
    expect(Date.parse(asOfs[1]) - baking).toBeLessThan(6 * 3_600_000 + 60_000);
    expect(Date.parse(asOfs[0])).toBeLessThanOrEqual(baking);
    expect(Date.parse(asOfs[0])).toBeGreaterThan(baking - 60_000);
  });

  it('terminate during the bake: the next release reconciles it (routing to main, nightly removed, row terminated, mailed), then runs', async () => {
    const world = fakeWorld({ temporal: env.client });
    const fakes = fakeActivities({}, world);
    const taskQueue = `canary-reconcile-${process.pid}`;
    // A plain client for the activity: the environment's own client locks time skipping again when
    // its result() returns, which would stop the clock under the test's own wait.
    const plain = new Client({ connection: env.connection });
    world.reconcile = () => reconcileNow(plain, { taskQueue, by: 'test' });
    const worker = await Worker.create({ connection: env.nativeConnection, taskQueue, workflowBundle: bundle, activities: fakes.activities });
    const outcome = await worker.runUntil(async () => {
      const first = await env.client.workflow.start(CanaryRelease, { taskQueue, workflowId: `release-stuck-${process.pid}`, args: [{ version: 'stuck', model: 'models/affinity-v1.json' }] });
      await waitForPhase(first, 'baking');
      await waitForBakeTimer(first);
      expect(fakes.routing.at(-1)).toEqual({ percent: 20, releaseId: 'stuck' });
      await first.terminate('operator pressed Terminate in the UI');
      const next = await env.client.workflow.start(CanaryRelease, { taskQueue, workflowId: `release-next-${process.pid}`, args: [{ version: 'next', model: 'models/affinity-v1.json' }] });
      const result = await next.result();
      recordHistory('reconcile-terminated', historyToJSON(await env.client.workflow.getHandle(reconcileWorkflowId(taskQueue)).fetchHistory()));
      return result;
    });
    expect(world.rows.get('stuck')).toMatchObject({ phase: 'aborted', decision: 'terminated' });
    expect(world.rows.get('stuck')?.reason).toMatch(/terminated in phase baking: operator pressed Terminate in the UI; reconciled/);
    expect(world.mails[0].subject).toBe('stuck: terminated (reconciled)');
    // Traffic went back to main before the next release routed its own share.
    expect(fakes.routing).toEqual([{ percent: 20, releaseId: 'stuck' }, { percent: 0, releaseId: null }, { percent: 20, releaseId: 'next' }]);
    expect(outcome.decision).toBe('promoted');
    expect(fakes.slots.get('main')).toBe('next');
    expect(fakes.slots.has('nightly')).toBe(false);
  });

  it('a promote update during the bake ends it early; outside the bake it is refused', async () => {
    const { outcome } = await release({}, {}, async (h) => {
      const refused = await h.executeUpdate(promoteUpdate, { args: [{ by: 'bob' }] }).catch((e: Error) => e);
      expect(String((refused as Error & { cause?: Error }).cause?.message)).toMatch(/only possible while baking/);
      for (;;) {
        const s = await h.query(statusQuery);
        if (s.phase === 'baking') break;
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(await h.executeUpdate(promoteUpdate, { args: [{ by: 'bob', reason: 'looks great' }] })).toMatch(/bake ends now/);
    });
    expect((outcome as ReleaseOutcome).decision).toBe('promoted');
    expect((outcome as ReleaseOutcome).reason).toContain('promoted early by bob');
  });

  it('survives a worker restart in the middle of the bake and still completes', async () => {
    const fakes = fakeActivities({});
    const taskQueue = `canary-restart-${process.pid}`;
    const handle = await env.client.workflow.start(CanaryRelease, { taskQueue, workflowId: `release-restart-${process.pid}`, args: [{ version: 'restart1', model: 'models/affinity-v1.json' }] });
    // No sticky cache: the test server does not move a sticky task queue to a new worker.
    const first = await Worker.create({ connection: env.nativeConnection, taskQueue, workflowBundle: bundle, activities: fakes.activities, maxCachedWorkflows: 0 });
    await first.runUntil(async () => {
      for (;;) {
        const s = await handle.query(statusQuery);
        if (s.phase === 'baking') break;
        await new Promise((r) => setTimeout(r, 50));
      }
    });
    expect(first.getState()).toBe('STOPPED');
    // A new worker process (same code, empty cache) picks the release up from its history.
    const second = await Worker.create({ connection: env.nativeConnection, taskQueue, workflowBundle: bundle, activities: fakes.activities, maxCachedWorkflows: 0 });
    const outcome = await second.runUntil(handle.result());
    expect(outcome.decision).toBe('promoted');
    expect(fakes.names().filter((x) => x === 'buildInferenceImage')).toHaveLength(1);
    expect(fakes.names().filter((x) => x === 'checkGuardrails')).toHaveLength(24);
  });

  it('a bad input fails the start with a message naming the field', async () => {
    const { outcome } = await release({}, { version: '-bad version', percent: 80 });
    expect(outcome).toBeInstanceOf(WorkflowFailedError);
    const msg = String((outcome as WorkflowFailedError).cause?.message);
    expect(msg).toMatch(/version: must match/);
    expect(msg).toMatch(/percent: must be an integer from 1 to 50/);
  });

  it('progressive steps 5 → 20 → 50: routes each share in order, judges at each boundary, promotes after the last', async () => {
    const { outcome, fakes } = await release({}, { steps: [5, 20, 50], bake: '1h', interval: '30m' }, undefined, 'canary-steps');
    expect(outcome).not.toBeInstanceOf(Error);
    const o = outcome as ReleaseOutcome;
    expect(o.decision).toBe('promoted');
    expect(o.reason).toMatch(/^the judge says Successful at step 3 \(50%\)/);
    expect(fakes.routing).toEqual([{ percent: 5, releaseId: o.version }, { percent: 20, releaseId: o.version }, { percent: 50, releaseId: o.version }]);
    // Each step is judged before the next one routes more users; guardrails run in every bake.
    expect(fakes.names().filter((x) => x === 'setRouting' || x === 'judgeRelease' || x === 'promoteSlot')).toEqual([
      'setRouting', 'judgeRelease', 'setRouting', 'judgeRelease', 'setRouting', 'judgeRelease', 'promoteSlot',
    ]);
    expect(o.status.guardrailChecks).toBe(6); // every 30 min over 3 × 1 h
    const asOfs = fakes.calls.filter((c) => c.name === 'judgeRelease').map((c) => Date.parse((c.args as { asOf: string }).asOf));
    expect(asOfs[1] - asOfs[0]).toBeGreaterThanOrEqual(3_600_000);
    expect(asOfs[2] - asOfs[1]).toBeGreaterThanOrEqual(3_600_000);
    expect(o.status).toMatchObject({ steps: [5, 20, 50], step: 3, percent: 50, extended: false });
    expect(fakes.slots.get('main')).toBe(o.version);
  });

  it('progressive steps: the MarqueePhase search attribute names the step while it is in flight', async () => {
    let phases: string[] = [];
    const { outcome } = await release({}, { steps: [5, 20], bake: '1h', interval: '30m' }, async (h) => {
      await h.result();
      const history = await h.fetchHistory();
      phases = (history.events ?? []).flatMap((e) => {
        const f = e.upsertWorkflowSearchAttributesEventAttributes?.searchAttributes?.indexedFields?.MarqueePhase;
        return f?.data ? [JSON.parse(Buffer.from(f.data).toString('utf8')) as string | string[]].flat() : [];
      });
    });
    expect((outcome as ReleaseOutcome).decision).toBe('promoted');
    expect(phases).toEqual([
      'offline-eval', 'building', 'deploying', 'routing 1/2 5%', 'baking 1/2 5%', 'online-eval 1/2 5%',
      'routing 2/2 20%', 'baking 2/2 20%', 'online-eval 2/2 20%', 'promoting', 'promoted',
    ]);
  });

  it('progressive steps: Failed at step 2 aborts before step 3, traffic back to main, nightly removed', async () => {
    const { outcome, fakes } = await release({ verdicts: ['Successful', 'Failed'] }, { steps: [5, 20, 50], bake: '1h', interval: '30m' });
    const o = outcome as ReleaseOutcome;
    expect(o.decision).toBe('aborted');
    expect(o.reason).toMatch(/^the judge says Failed at step 2 \(20%\)/);
    expect(fakes.routing).toEqual([{ percent: 5, releaseId: o.version }, { percent: 20, releaseId: o.version }, { percent: 0, releaseId: null }]);
    expect(fakes.names().filter((x) => x === 'judgeRelease')).toHaveLength(2);
    expect(fakes.names()).not.toContain('promoteSlot');
    expect(fakes.slots.has('nightly')).toBe(false);
    expect(fakes.mails[0].status?.decision).toBe('aborted');
    expect(o.status.step).toBe(2);
  });

  it('progressive steps: Inconclusive at a step extends that step once, then goes on', async () => {
    const { outcome, fakes } = await release({ verdicts: ['Successful', 'Inconclusive', 'Successful', 'Successful'] }, { steps: [5, 20, 50], bake: '1h', interval: '30m' });
    const o = outcome as ReleaseOutcome;
    expect(o.decision).toBe('promoted');
    expect(o.status.extended).toBe(true);
    expect(fakes.routing.map((r) => r.percent)).toEqual([5, 20, 50]);
    // The extension (6 h) happens at 20 %, before the step to 50 %.
    const seq = fakes.names().filter((x) => x === 'setRouting' || x === 'judgeRelease');
    expect(seq).toEqual(['setRouting', 'judgeRelease', 'setRouting', 'judgeRelease', 'judgeRelease', 'setRouting', 'judgeRelease']);
    expect(o.status.guardrailChecks).toBe(2 + 2 + 12 + 2);
  });

  it('progressive steps: Inconclusive twice at a step aborts there', async () => {
    const { outcome, fakes } = await release({ verdicts: ['Inconclusive', 'Inconclusive'] }, { steps: [5, 20], bake: '1h', interval: '30m' });
    const o = outcome as ReleaseOutcome;
    expect(o.decision).toBe('aborted');
    expect(o.reason).toMatch(/^still Inconclusive at step 1 \(5%\) after extending the bake once/);
    expect(fakes.routing.map((r) => r.percent)).toEqual([5, 0]);
  });

  it('progressive steps: a promote update during the first step\'s bake promotes without the later steps', async () => {
    const { outcome, fakes } = await release({}, { steps: [5, 20, 50], bake: '1h', interval: '30m' }, async (h) => {
      await waitForPhase(h, 'baking');
      expect(await h.query(statusQuery)).toMatchObject({ step: 1, steps: [5, 20, 50], percent: 5 });
      await h.executeUpdate(promoteUpdate, { args: [{ by: 'bob', reason: '5% is enough' }] });
    });
    const o = outcome as ReleaseOutcome;
    expect(o.decision).toBe('promoted');
    expect(o.reason).toContain('promoted early by bob: 5% is enough');
    expect(fakes.routing.map((r) => r.percent)).toEqual([5]);
    expect(fakes.slots.get('main')).toBe(o.version);
  });

  it('bad steps fail the start with a message naming the field', async () => {
    const { outcome } = await release({}, { steps: [20, 5] });
    expect(outcome).toBeInstanceOf(WorkflowFailedError);
    expect(String((outcome as WorkflowFailedError).cause?.message)).toMatch(/steps: must be 1 to 5 increasing integer percents from 1 to 50/);
  });

  it('replays every committed CanaryRelease and ReconcileReleases history against the current workflow code', async () => {
    const mine = (n: string) => n.startsWith('canary-') || n.startsWith('reconcile-');
    const required = COMMITTED_HISTORIES.filter(mine);
    const onDisk = readdirSync(historiesDir).map((f) => f.replace(/\.json$/, '')).filter(mine);
    // A history on disk that nobody requires would silently stop being replayed when deleted.
    expect(onDisk.sort()).toEqual([...required].sort());
    for (const name of required) {
      await Worker.runReplayHistory({ workflowBundle: bundle }, committedHistory(name), `replay-${name}`);
    }
  });
});
