/**
 * The live dashboard: GET /dashboard (the page), /dashboard/data (JSON), /dashboard/echarts.min.js
 * (the charting library from node_modules: no network needed), /healthz, /metrics.
 *
 * Environment: DASHBOARD_PORT (8095), DASHBOARD_PROMETHEUS_URL (http://127.0.0.1:9090),
 * DASHBOARD_RANGE (3h: how far back the panels reach), DASHBOARD_REFRESH_MS (15000).
 */
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { loadConfig } from '../../lib/config.ts';
import { durationMs } from '../../lib/duration.ts';
import { createPool } from '../../lib/db.ts';
import { listen, serviceApp } from '../../lib/http.ts';
import { Registry } from '../../lib/metrics.ts';
import { gitCommit, packageVersion } from '../../lib/version.ts';
import { dashboardData } from './data.ts';
import { dashboardPage } from './page.ts';

const cfg = loadConfig();
const env = process.env;
const port = Number(env.DASHBOARD_PORT ?? 8095);
const prometheus = env.DASHBOARD_PROMETHEUS_URL ?? 'http://127.0.0.1:9090';
const rangeMs = durationMs(env.DASHBOARD_RANGE ?? '3h');
const refreshMs = Number(env.DASHBOARD_REFRESH_MS ?? 15_000);
if (!Number.isInteger(port) || port < 0) throw new Error(`DASHBOARD_PORT must be a port number, got "${env.DASHBOARD_PORT}"`);
if (!Number.isFinite(refreshMs) || refreshMs < 1000) throw new Error(`DASHBOARD_REFRESH_MS must be at least 1000, got "${env.DASHBOARD_REFRESH_MS}"`);
const echartsBundle = createRequire(import.meta.url).resolve('echarts/dist/echarts.min.js');

const pool = createPool(cfg, { max: 4, applicationName: 'marquee-dashboard' });
pool.on('error', (err) => console.error(`dashboard: idle database connection failed: ${err.message}`));
const registry = new Registry();
const requests = registry.counter('dashboard_data_requests_total', 'Dashboard data requests, by outcome');

const app = serviceApp({ registry, health: () => ({ status: 'ok', service: 'dashboard', version: packageVersion, commit: gitCommit(), prometheus }) });
app.get(['/', '/dashboard'], (_req, res) => { res.type('html').send(dashboardPage(refreshMs)); });
app.get('/dashboard/echarts.min.js', (_req, res) => { res.sendFile(echartsBundle); });
app.get('/dashboard/data', async (req, res) => {
  try {
    const range = typeof req.query.range === 'string' ? durationMs(req.query.range) : rangeMs;
    res.json(await dashboardData(pool, prometheus, range));
    requests.inc({ outcome: 'ok' });
  } catch (err) {
    requests.inc({ outcome: 'error' });
    res.status(500).json({ error: (err as Error).message });
  }
});

const server = await listen(app, port);
console.log(`dashboard: http://127.0.0.1:${(server.address() as AddressInfo).port}/dashboard (Prometheus ${prometheus}, Postgres)`);

const stop = () => { server.close(); void pool.end().then(() => process.exit(0)); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
