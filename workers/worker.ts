import { fileURLToPath } from 'node:url';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import type { Config } from '../lib/config.ts';
import { createActivities, createActivityDeps, type ActivityDeps } from '../activities/index.ts';

/** The workflows entry point the worker bundles (webpack + swc read the .ts source directly). */
export const workflowsPath = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

export interface CreateWorkerOptions {
  /** Overrides cfg.temporal.taskQueue, e.g. a unique queue per test. */
  taskQueue?: string;
  /** Replaces some of the activities' dependencies (tests). */
  deps?: Partial<ActivityDeps>;
  /** Prebuilt workflow code (workers/bundle.ts) instead of bundling workflowsPath at start. */
  workflowBundle?: { code: string };
  /** Any other Worker.create option (tests pass e.g. maxConcurrentActivityTaskExecutions). */
  worker?: Partial<Omit<WorkerOptions, 'connection' | 'namespace' | 'taskQueue'>>;
}

/**
 * A worker for all Marquee workflows and activities, on the configured server, namespace and task
 * queue. The activities' dependencies (pool, slot runtime, gateway client, mailer) are made here,
 * once; `close` ends the pool after the worker has stopped.
 */
export async function createWorker(cfg: Config, opts: CreateWorkerOptions = {}): Promise<{ worker: Worker; deps: ActivityDeps; close: () => Promise<void> }> {
  const deps = await createActivityDeps(cfg, opts.deps);
  const connection = await NativeConnection.connect({ address: cfg.temporal.address });
  try {
    const worker = await Worker.create({
      connection,
      namespace: cfg.temporal.namespace,
      taskQueue: opts.taskQueue ?? cfg.temporal.taskQueue,
      ...(opts.workflowBundle ? { workflowBundle: opts.workflowBundle } : { workflowsPath }),
      activities: createActivities(deps),
      ...opts.worker,
    });
    return { worker, deps, close: async () => { await connection.close(); await deps.temporal.connection.close(); await deps.pool.end(); } };
  } catch (err) {
    await connection.close();
    await deps.temporal.connection.close();
    await deps.pool.end();
    throw err;
  }
}
