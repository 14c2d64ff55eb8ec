import { DefaultLogger, Runtime } from '@temporalio/worker';
import { loadConfig } from '../lib/config.ts';
import { startWorkerHttp } from './http.ts';
import { cachedWorkflowBundle } from './bundle.ts';
import { createWorker, workflowsPath } from './worker.ts';

// The SDK logs every bundle and state change at INFO; an operator needs warnings and up.
Runtime.install({ logger: new DefaultLogger((process.env.MARQUEE_WORKER_LOG as 'INFO' | undefined) ?? 'WARN') });
const cfg = loadConfig();
const bundle = await cachedWorkflowBundle(workflowsPath);
const { worker, deps, close } = await createWorker(cfg, { workflowBundle: { code: bundle.code } });
// shutdown() lets in-flight tasks finish, then run() resolves. The SDK's Runtime also reacts to
// these signals by default, so only ask when it has not already begun (shutdown() throws otherwise).
const stop = (): void => {
  if (worker.getState() === 'RUNNING') worker.shutdown();
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
// Monitoring is secondary to running workflows: a taken port is reported (and Prometheus will
// alert that the worker is down) but does not stop the worker.
const http = await startWorkerHttp(cfg, deps.pool, () => worker.getState()).catch((err: Error) => {
  console.error(`worker: no /healthz or /metrics on 127.0.0.1:${cfg.services.worker.port}: ${err.message}`);
  return undefined;
});
console.log(`worker: task queue ${cfg.temporal.taskQueue} on ${cfg.temporal.address} (namespace ${cfg.temporal.namespace}), inference slots as ${deps.runtime.kind === 'docker' ? 'Docker containers' : 'local processes'}; /healthz and /metrics on 127.0.0.1:${cfg.services.worker.port}`);
try {
  await worker.run();
} finally {
  http?.close();
  await close();
}
