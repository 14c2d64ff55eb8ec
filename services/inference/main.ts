/**
 * One inference slot. The model spec is chosen at start (INFERENCE_MODEL), so the same code runs
 * as main (:3001) and nightly (:3002), on the host or in an image.
 *
 * env: INFERENCE_MODEL (spec path, default models/seed-baseline.json), INFERENCE_SLOT (main|nightly),
 * INFERENCE_PORT (default from the slot's config), INFERENCE_IMAGE, INFERENCE_VERSION (the label it is
 * deployed as, reported by /healthz; default the spec's version), MARQUEE_GIT_COMMIT,
 * INFERENCE_DEADLINE_MS (400), INFERENCE_REFRESH_MS (30000), INFERENCE_FULL_RELOAD_MS (900000),
 * INFERENCE_LISTS_REFRESH_MS (30000), INFERENCE_PG_POOL (8), INFERENCE_HISTORY_USERS (50000 histories kept
 * in memory, 0: none; see history-cache.ts); MARQUEE_POSTGRES_URL and
 * MARQUEE_CHROMA_URL as for every service.
 */
import { loadConfig } from '../../lib/config.ts';
import { createPool } from '../../lib/db.ts';
import http from 'node:http';
import { readHistories, recentlyActiveUsers } from '../../lib/models/history.ts';
import { loadSpec, SpecError } from '../../lib/models/spec.ts';
import { inferenceHandler } from './app.ts';
import { Engine } from './engine.ts';
import { HistoryCache } from './history-cache.ts';

function intEnv(name: string, fallback: number, min = 1): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) {
    console.error(`inference: ${name} must be an integer ≥ ${min}, got "${raw}"`);
    process.exit(2);
  }
  return n;
}

const cfg = loadConfig();
const slot = process.env.INFERENCE_SLOT ?? 'main';
if (slot !== 'main' && slot !== 'nightly') {
  console.error(`inference: INFERENCE_SLOT must be main or nightly, got "${slot}"`);
  process.exit(2);
}
const port = intEnv('INFERENCE_PORT', slot === 'main' ? cfg.services.inferenceMain.port : cfg.services.inferenceNightly.port);

let model;
try {
  model = loadSpec(process.env.INFERENCE_MODEL ?? 'models/seed-baseline.json');
} catch (err) {
  console.error(err instanceof SpecError ? err.message : `inference: ${(err as Error).message}`);
  process.exit(2);
}

const pool = createPool(cfg, { max: intEnv('INFERENCE_PG_POOL', 8), applicationName: `marquee-inference-${slot}` });
// An idle connection dropped by the server must not take the process down; requests fall back.
pool.on('error', (err) => console.error(`inference: postgres connection: ${err.message}`));

const engine = new Engine(model, pool, cfg.chroma.url, {
  deadlineMs: intEnv('INFERENCE_DEADLINE_MS', 400),
  refreshMs: intEnv('INFERENCE_REFRESH_MS', 30_000),
  fullReloadMs: intEnv('INFERENCE_FULL_RELOAD_MS', 900_000),
  listsRefreshMs: intEnv('INFERENCE_LISTS_REFRESH_MS', 30_000),
  historyCache: new HistoryCache(cfg.postgres.url, intEnv('INFERENCE_HISTORY_USERS', 50_000, 0), {
    users: (limit) => recentlyActiveUsers(pool, limit),
    read: (users) => readHistories(pool, users),
  }),
});
const server = http.createServer(inferenceHandler(engine, { slot, image: process.env.INFERENCE_IMAGE || null, version: process.env.INFERENCE_VERSION || undefined }));
await new Promise<void>((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, process.env.INFERENCE_HOST ?? '127.0.0.1', () => resolve());
});
server.keepAliveTimeout = 65_000;
engine.start();
console.log(`inference ${slot}: model ${model.spec.version} (${model.spec.rule}, ${model.spec.collection}, sha256 ${model.hash.slice(0, 12)}) on 127.0.0.1:${port}`);

let stopping = false;
function shutdown(signal: string): void {
  if (stopping) return;
  stopping = true;
  console.log(`inference ${slot}: ${signal}, stopping`);
  engine.stop();
  server.close(() => void pool.end().finally(() => process.exit(0)));
  server.closeIdleConnections();
  setTimeout(() => process.exit(0), 3000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
