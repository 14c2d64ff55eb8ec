import { loadConfig } from '../../lib/config.ts';
import { createPool } from '../../lib/db.ts';
import { listen, serviceApp } from '../../lib/http.ts';
import { gitCommit, packageVersion } from '../../lib/version.ts';
import { Ingest } from './consumer.ts';

const cfg = loadConfig();
const port = Number(process.env.INGEST_PORT ?? cfg.services.ingest.port);
const pool = createPool(cfg, { max: 6, applicationName: 'marquee-ingest' });
const ingest = new Ingest(cfg, pool, { groupId: process.env.INGEST_GROUP_ID, topic: process.env.INGEST_TOPIC });

const app = serviceApp({
  registry: ingest.registry,
  health: () => ({ ...ingest.health(), service: 'ingest', version: packageVersion, commit: gitCommit() }),
});
// Used by the restore workflow: stop reading while the database is swapped underneath. Answers
// once the batches in hand are written, so nothing is written into the old database afterwards.
app.post('/admin/pause', async (_req, res) => {
  ingest.pause();
  await ingest.drained();
  res.json({ paused: true });
});
app.post('/admin/resume', async (_req, res) => {
  try {
    await ingest.resume();
    res.json({ paused: false });
  } catch (err) {
    res.status(500).type('text/plain').send(`resume failed: ${(err as Error).message}`);
  }
});

const server = await listen(app, port);
await ingest.start();
console.log(`ingest: /healthz and /metrics on 127.0.0.1:${port}`);

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  console.log(`ingest: ${signal}, finishing the batch in hand`);
  await ingest.stop();
  server.close();
  await pool.end();
  console.log('ingest: stopped');
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
