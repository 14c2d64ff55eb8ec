import type { Server } from 'node:http';
import { loadConfig } from '../../lib/config.ts';
import { listen, serviceApp } from '../../lib/http.ts';
import { gitCommit, packageVersion } from '../../lib/version.ts';
import { IngestThreads } from './threads.ts';

const cfg = loadConfig();
const port = Number(process.env.INGEST_PORT ?? cfg.services.ingest.port);
const ingest = new IngestThreads(cfg, {
  threads: cfg.services.ingest.threads,
  groupId: process.env.INGEST_GROUP_ID,
  topic: process.env.INGEST_TOPIC,
  // A thread that dies takes the process with it: the supervisor (or Docker) starts it again, and
  // every partition goes on from the offset Postgres holds.
  onFailure: (err) => {
    console.error(`ingest: ${err.message}; exiting`);
    process.exit(1);
  },
});

const app = serviceApp({
  registry: ingest.registry,
  health: async () => ({ ...(await ingest.health()), service: 'ingest', version: packageVersion, commit: gitCommit() }),
});
// Used by the restore workflow: stop reading while the database is swapped underneath. Answers
// once the batches in hand are written, so nothing is written into the old database afterwards.
app.post('/admin/pause', async (_req, res) => {
  try {
    await ingest.pause();
    await ingest.drained();
    res.json({ paused: true });
  } catch (err) {
    res.status(500).type('text/plain').send(`pause failed: ${(err as Error).message}`);
  }
});
app.post('/admin/resume', async (_req, res) => {
  try {
    await ingest.resume();
    res.json({ paused: false });
  } catch (err) {
    res.status(500).type('text/plain').send(`resume failed: ${(err as Error).message}`);
  }
});

const server: Server = await listen(app, port);
let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  console.log(`ingest: ${signal}, finishing the batches in hand`);
  await ingest.stop();
  server.close();
  console.log('ingest: stopped');
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));

try {
  await ingest.start();
  console.log(`ingest: /healthz and /metrics on 127.0.0.1:${port}`);
} catch (err) {
  // A SIGTERM during the start stops the threads it was starting; shutdown() then exits.
  if (!stopping) {
    console.error(`ingest: could not start: ${(err as Error).message}`);
    process.exit(1);
  }
}
