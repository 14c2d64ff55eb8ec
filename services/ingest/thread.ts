/**
 * One ingest thread (started by threads.ts): an Ingest consumer with its own Postgres pool, one
 * member of the process's consumer group, driven by the main thread's commands.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { loadConfig } from '../../lib/config.ts';
import { createPool } from '../../lib/db.ts';
import { threadRuntimeMetrics } from '../../lib/thread-metrics.ts';
import { Ingest } from './consumer.ts';
import type { FromThread, ThreadData, ToThread } from './threads.ts';

if (!parentPort) throw new Error('services/ingest/thread.ts runs as a worker thread of services/ingest/threads.ts');
const port = parentPort;
const data = workerData as ThreadData;
const send = (m: FromThread): void => port.postMessage(m);

const cfg = loadConfig();
const pool = createPool(cfg, { max: data.poolMax, database: data.database, applicationName: 'marquee-ingest' });
let joinNow: () => void = () => undefined;
let neverJoin: (err: Error) => void = () => undefined;
const mayJoin = new Promise<void>((resolve, reject) => { joinNow = resolve; neverJoin = reject; });
const ingest = new Ingest(cfg, pool, {
  groupId: data.groupId,
  topic: data.topic,
  log: (line) => send({ log: line }),
  onFatal: (err) => {
    // Ends this thread only; the main thread reports it and the service exits (threads.ts).
    send({ log: `ingest: ${err.message}; the thread exits` });
    process.exit(1);
  },
  beforeJoin: () => {
    send({ ready: true });
    return mayJoin;
  },
});

// The process metrics stay with the main thread: these are this thread's heap and collections.
const stopGcObserver = threadRuntimeMetrics(ingest.registry, 'ingest');

const commands: Record<ToThread['cmd'], () => unknown> = {
  // Answered once this module has run: the thread's code is loaded.
  loaded: () => true,
  start: () => ingest.start(),
  join: () => joinNow(),
  pause: () => ingest.pause(),
  drained: () => ingest.drained(),
  resume: () => ingest.resume(),
  health: () => ingest.health(),
  metrics: () => ingest.registry.prom.getMetricsAsJSON(),
  stop: async () => {
    // Stopped before the threads joined (a sibling failed, or SIGTERM during start): never join.
    neverJoin(new Error('stopped before joining the group'));
    await ingest.stop();
    await pool.end();
    stopGcObserver();
  },
};

port.on('message', (m: ToThread) => {
  void (async () => {
    try {
      send({ id: m.id, ok: true, value: await commands[m.cmd]() });
    } catch (err) {
      send({ id: m.id, ok: false, error: (err as Error).message });
    }
  })();
});
