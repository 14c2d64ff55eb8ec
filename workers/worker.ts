import { fileURLToPath } from 'node:url';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import type { Config } from '../lib/config.ts';
import * as activities from '../activities/index.ts';

/** The workflows entry point the worker bundles (webpack + swc read the .ts source directly). */
export const workflowsPath = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

export interface CreateWorkerOptions {
  /** Overrides cfg.temporal.taskQueue, e.g. a unique queue per test. */
  taskQueue?: string;
  /** Any other Worker.create option (tests pass e.g. maxConcurrentActivityTaskExecutions). */
  worker?: Partial<Omit<WorkerOptions, 'connection' | 'namespace' | 'taskQueue'>>;
}

/** A worker for all Marquee workflows and activities, on the configured server, namespace and task queue. */
export async function createWorker(cfg: Config, opts: CreateWorkerOptions = {}): Promise<Worker> {
  const connection = await NativeConnection.connect({ address: cfg.temporal.address });
  try {
    return await Worker.create({
      connection,
      namespace: cfg.temporal.namespace,
      taskQueue: opts.taskQueue ?? cfg.temporal.taskQueue,
      workflowsPath,
      activities,
      ...opts.worker,
    });
  } catch (err) {
    await connection.close();
    throw err;
  }
}
