/**
 * The worker's HTTP side, for monitoring only: /healthz (is the Temporal worker running),
 * /metrics (process metrics and the release phase clock, read from Postgres) and /sd/inference
 * (the inference slots in Prometheus' http_sd format, so nightly is scraped only while it exists).
 */
import type { Server } from 'node:http';
import type { Config } from '../lib/config.ts';
import type { Pool } from '../lib/db.ts';
import { listen, serviceApp } from '../lib/http.ts';
import { Registry } from '../lib/metrics.ts';
import { inferenceTargets, registerReleaseMetrics } from '../lib/monitoring/release-metrics.ts';
import { gitCommit, packageVersion } from '../lib/version.ts';

export async function startWorkerHttp(cfg: Config, pool: Pool, state: () => string, port = cfg.services.worker.port): Promise<Server> {
  const registry = new Registry();
  registerReleaseMetrics(registry, cfg, pool);
  const app = serviceApp({
    registry,
    health: () => ({ status: state() === 'RUNNING' ? 'ok' : 'starting', worker: state(), service: 'worker', version: packageVersion, commit: gitCommit(), taskQueue: cfg.temporal.taskQueue }),
  });
  app.get('/sd/inference', async (_req, res) => {
    try {
      res.json(await inferenceTargets(cfg, pool));
    } catch (err) {
      // A 500 makes Prometheus keep the slots it last discovered rather than drop them.
      res.status(500).type('text/plain').send(`routing state: ${(err as Error).message}\n`);
    }
  });
  return listen(app, port);
}
