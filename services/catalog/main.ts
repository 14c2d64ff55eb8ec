/**
 * The catalog service: keeps filling movie and user metadata from the info API for every row
 * ingest adds without it (polling), and adds content vectors for newly filled movies.
 *
 * Environment: CATALOG_API (default http://127.0.0.1:<simulator port>), CATALOG_PORT (8093),
 * CATALOG_RATE requests/s (50), CATALOG_CONCURRENCY (8), CATALOG_POLL_MS (3000),
 * CATALOG_VECTORS=0 to not add content vectors, CATALOG_VECTOR_VERSION (1).
 */
import { loadConfig } from '../../lib/config.ts';
import { createPool } from '../../lib/db.ts';
import { listen, serviceApp } from '../../lib/http.ts';
import { Registry } from '../../lib/metrics.ts';
import { gitCommit, packageVersion } from '../../lib/version.ts';
import { buildVectors } from '../../lib/vectors/build.ts';
import { describeReport } from '../../lib/vectors/cli.ts';
import { catalogMetrics, countPending, fillOnce, type FillResult } from './fill.ts';
import { TokenBucket, sleep } from './ratelimit.ts';

const cfg = loadConfig();
const env = process.env;
const port = Number(env.CATALOG_PORT ?? cfg.services.catalog.port);
const api = env.CATALOG_API ?? `http://127.0.0.1:${cfg.services.simulator.port}`;
const rate = Number(env.CATALOG_RATE ?? 50);
const concurrency = Number(env.CATALOG_CONCURRENCY ?? 8);
const pollMs = Number(env.CATALOG_POLL_MS ?? 3000);
const vectorsOn = env.CATALOG_VECTORS !== '0';
const vectorVersion = Number(env.CATALOG_VECTOR_VERSION ?? 1);
/** Incremental vector runs read the whole collection's ids, so not more often than this. */
const VECTOR_INTERVAL_MS = 30_000;

const pool = createPool(cfg, { max: 4, applicationName: 'marquee-catalog' });
const registry = new Registry();
const metrics = catalogMetrics(registry);
const passErrors = registry.counter('catalog_pass_errors_total', 'Catalog passes that failed (database or other unexpected errors)');
const vectorRuns = registry.counter('catalog_vector_runs_total', 'Incremental content-vector runs started by the catalog, by outcome', ['outcome']);
const limiter = new TokenBucket(rate);
const stop = new AbortController();

let lastPass: (FillResult & { at: string }) | null = null;
let lastError: string | null = null;
let moviesSinceVectors = 0;
let vectorRun: Promise<void> | null = null;
let lastVectorRun = 0;

const app = serviceApp({
  registry,
  health: async () => ({
    status: 'ok', service: 'catalog', version: packageVersion, commit: gitCommit(), api, rate,
    pending: await countPending(pool), lastPass, lastError,
  }),
});
const server = await listen(app, port);
console.log(`catalog: filling metadata from ${api} at ≤${rate} req/s; /healthz and /metrics on 127.0.0.1:${port}`);

function maybeVectors(): void {
  if (!vectorsOn || vectorRun || moviesSinceVectors === 0 || Date.now() - lastVectorRun < VECTOR_INTERVAL_MS || stop.signal.aborted) return;
  moviesSinceVectors = 0;
  lastVectorRun = Date.now();
  vectorRun = buildVectors(cfg, pool, { kind: 'content', version: vectorVersion, incremental: true })
    .then((r) => { vectorRuns.inc({ outcome: 'ok' }); if (r.upserted) console.log(`catalog: ${describeReport(r)}`); })
    // Vectors are a convenience here (the vector job is the real owner); never let them stop the catalog.
    .catch((err: Error) => { vectorRuns.inc({ outcome: 'error' }); console.error(`catalog: content vectors failed: ${err.message}`); })
    .finally(() => { vectorRun = null; });
}

async function loop(): Promise<void> {
  while (!stop.signal.aborted) {
    try {
      const r = await fillOnce(pool, api, {
        limiter, concurrency, signal: stop.signal, metrics,
        onMoviesFetched: (ids) => { moviesSinceVectors += ids.length; maybeVectors(); },
      });
      lastPass = { ...r, at: new Date().toISOString() };
      lastError = null;
      const got = r.fetched.movie + r.fetched.user;
      if (got || r.notFound.movie + r.notFound.user + r.failed.movie + r.failed.user) {
        console.log(`catalog: filled ${r.fetched.movie} movies, ${r.fetched.user} users; ${r.notFound.movie + r.notFound.user} not found, ${r.failed.movie + r.failed.user} failed; pending ${r.pending.movie} movies, ${r.pending.user} users (${r.ms} ms)`);
      }
    } catch (err) {
      if (stop.signal.aborted) break;
      passErrors.inc();
      lastError = (err as Error).message;
      console.error(`catalog: pass failed: ${lastError}`);
    }
    maybeVectors();
    await sleep(pollMs, stop.signal).catch(() => undefined);
  }
}

const running = loop();

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  console.log(`catalog: ${signal}, stopping`);
  // Aborts the requests in flight; rows they were fetching stay unfilled and are picked up next start.
  stop.abort(new Error('catalog stopping'));
  await running;
  if (vectorRun) await Promise.race([vectorRun, sleep(10_000)]);
  server.close();
  await pool.end();
  console.log('catalog: stopped');
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
