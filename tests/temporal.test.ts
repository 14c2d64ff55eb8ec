import { execFile } from 'node:child_process';
import os from 'node:os';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils.js';
import { bundleWorkflowCode, DefaultLogger, Runtime, Worker, type WorkflowBundle } from '@temporalio/worker';
import { loadConfig } from '../lib/config.ts';
import { connectClient } from '../lib/temporal.ts';
import { temporalBinary } from '../stack/components/venv.ts';
import { createWorker, workflowsPath } from '../workers/worker.ts';
import { ping } from '../workflows/index.ts';
import { requireServer } from './support/servers.ts';
import { committedHistory, recordHistory } from './support/histories.ts';

const exec = promisify(execFile);
const cfg = loadConfig();
const port = Number(cfg.temporal.address.split(':').pop());
// A queue of our own, so a `npm run worker` left running elsewhere cannot pick up these tasks.
const taskQueue = `test-ping-${process.pid}-${Date.now()}`;
const host = os.hostname();

// The SDK logs every worker state change at INFO; warnings are enough in test output. Core's own
// log stays at ERROR because the tampered-history replay below makes it warn on purpose.
Runtime.install({ logger: new DefaultLogger('WARN'), telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' } } } });

let worker: Worker;
let running: Promise<void>;
let closeWorker: (() => Promise<void>) | undefined;
let client: Client;
let replayBundle: WorkflowBundle;

/** Runs the Temporal CLI against the configured server and returns its stdout. */
async function cli(...args: string[]): Promise<string> {
  const { stdout } = await exec(temporalBinary(), [...args, '--address', cfg.temporal.address, '--namespace', cfg.temporal.namespace], { timeout: 60_000 });
  return stdout;
}

const replayOptions = (): Parameters<typeof Worker.runReplayHistory>[0] => ({ workflowBundle: replayBundle });

describe('temporal', () => {
  beforeAll(async () => {
    await requireServer('temporal', port);
    client = await connectClient(cfg);
    ({ worker, close: closeWorker } = await createWorker(cfg, { taskQueue }));
    running = worker.run();
    // One bundle of the current workflow code for all replays (bundling takes seconds).
    replayBundle = await bundleWorkflowCode({ workflowsPath, logger: new DefaultLogger('WARN') });
  });

  afterAll(async () => {
    if (worker?.getState() === 'RUNNING') worker.shutdown();
    await running;
    await closeWorker?.();
    await client?.connection.close();
  });

  it('runs ping started with @temporalio/client on the worker', async () => {
    const result = await client.workflow.execute(ping, { taskQueue, workflowId: `ping-client-${taskQueue}`, args: ['client'] });
    expect(result).toBe(`pong: client from ${host}`);
  });

  it('runs ping started with the temporal CLI, and the CLI sees it complete', async () => {
    const workflowId = `ping-cli-${taskQueue}`;
    await cli('workflow', 'start', '--type', 'ping', '--task-queue', taskQueue, '--input', '"cli"', '--workflow-id', workflowId);

    const result = JSON.parse(await cli('workflow', 'result', '--workflow-id', workflowId, '--output', 'json'));
    expect(result.status).toBe('COMPLETED');
    expect(result.result).toBe(`pong: cli from ${host}`);

    const shown = JSON.parse(await cli('workflow', 'show', '--workflow-id', workflowId, '--output', 'json'));
    const events: Array<Record<string, any>> = shown.events;
    expect(events[0].eventType).toBe('EVENT_TYPE_WORKFLOW_EXECUTION_STARTED');
    const scheduled = events.find((e) => e.eventType === 'EVENT_TYPE_ACTIVITY_TASK_SCHEDULED');
    expect(scheduled?.activityTaskScheduledEventAttributes.activityType.name).toBe('ping');
    expect(events.at(-1)?.eventType).toBe('EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED');
  });

  it('replays the history of a fresh ping run against the current workflow code', async () => {
    const workflowId = `ping-replay-${taskQueue}`;
    const handle = await client.workflow.start(ping, { taskQueue, workflowId, args: ['replay'] });
    expect(await handle.result()).toBe(`pong: replay from ${host}`);
    const history = await handle.fetchHistory();
    await Worker.runReplayHistory(replayOptions(), history, workflowId);

    // The JSON form is what gets committed; it must replay just the same.
    const json = historyToJSON(history);
    await Worker.runReplayHistory(replayOptions(), JSON.parse(json), workflowId);
    recordHistory('ping', json);

    // Proof the replayer really compares: a history whose activity differs from what the code schedules must fail.
    const tampered = JSON.parse(json);
    const event = tampered.events.find((e: any) => e.eventType === 'EVENT_TYPE_ACTIVITY_TASK_SCHEDULED');
    event.activityTaskScheduledEventAttributes.activityType.name = 'somethingElse';
    await expect(Worker.runReplayHistory(replayOptions(), tampered, workflowId)).rejects.toThrow(/nondetermin/i);
  });

  it('replays the committed ping history (tests/histories/ping.json)', async () => {
    // Guards old, still-running executions: a workflow change that breaks this needs patched() or a new type.
    const history = committedHistory('ping');
    expect(history.events[0].workflowExecutionStartedEventAttributes.workflowType.name).toBe('ping');
    await Worker.runReplayHistory(replayOptions(), history);
  });
});
