import { readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WorkflowFailedError } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils.js';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, DefaultLogger, Runtime, Worker, type WorkflowBundle } from '@temporalio/worker';
import { testServerBinary } from '../stack/components/venv.ts';
import { workflowsPath } from '../workers/worker.ts';
import { abortSignal, CanaryRelease, promoteUpdate, statusQuery } from '../workflows/canary.ts';
import type { ReleaseInput } from '../lib/release/input.ts';
import type { ReleaseOutcome } from '../lib/release/types.ts';
import { fakeActivities, type Scenario } from './support/canary-fakes.ts';
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
    expect(fakes.mails[0].status.decision).toBe('promoted');
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
    expect(fakes.mails[0].status.decision).toBe('aborted');
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
    expect(fakes.mails[0].status.decision).toBe('failed');
  });

  it('a mail server that stays down does not undo the decision: promoted, with the mail marked not sent', async () => {
    const { outcome, fakes } = await release({ verdicts: ['Successful'], mailDown: true }, {}, undefined, 'canary-mail-down');
    expect(outcome).not.toBeInstanceOf(Error);
    const o = outcome as ReleaseOutcome;
    expect(o.decision).toBe('promoted');
    expect(o.status.mail).toMatch(/^not sent: .*ECONNREFUSED/);
    expect(fakes.names().filter((x) => x === 'notifyReleaseOutcome').length).toBeGreaterThan(1);
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

  it('replays every committed CanaryRelease history against the current workflow code', async () => {
    const required = COMMITTED_HISTORIES.filter((n) => n.startsWith('canary-'));
    const onDisk = readdirSync(historiesDir).filter((f) => f.startsWith('canary-')).map((f) => f.replace(/\.json$/, ''));
    // A history on disk that nobody requires would silently stop being replayed when deleted.
    expect(onDisk.sort()).toEqual([...required].sort());
    for (const name of required) {
      await Worker.runReplayHistory({ workflowBundle: bundle }, committedHistory(name), `replay-${name}`);
    }
  });
});
