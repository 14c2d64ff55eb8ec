import { loadConfig } from '../lib/config.ts';
import { createWorker } from './worker.ts';

const cfg = loadConfig();
const worker = await createWorker(cfg);
// shutdown() lets in-flight tasks finish, then run() resolves. The SDK's Runtime also reacts to
// these signals by default, so only ask when it has not already begun (shutdown() throws otherwise).
const stop = (): void => {
  if (worker.getState() === 'RUNNING') worker.shutdown();
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
console.log(`worker: task queue ${cfg.temporal.taskQueue} on ${cfg.temporal.address} (namespace ${cfg.temporal.namespace})`);
try {
  await worker.run();
} finally {
  await worker.connection?.close();
}
