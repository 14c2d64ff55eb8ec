/**
 * The gateway process. Port: GATEWAY_PORT or services.gateway.port (0 picks a free one; the
 * "listening" line says which). Main's URL for a database without routing state: GATEWAY_MAIN_URL
 * or http://127.0.0.1:<services.inferenceMain.port>. Budgets and intervals can be tuned with
 * GATEWAY_NIGHTLY_BUDGET_MS, GATEWAY_MAIN_DEADLINE_MS, GATEWAY_FLUSH_MS, GATEWAY_HEALTH_MS.
 */
import type { AddressInfo } from 'node:net';
import { checkAdminToken } from '../../lib/admin-token.ts';
import { loadConfig } from '../../lib/config.ts';
import { createPool } from '../../lib/db.ts';
import { defaultOptions, Gateway } from './gateway.ts';

const cfg = loadConfig();
const env = (name: string, def: number) => (process.env[name] !== undefined ? Number(process.env[name]) : def);
const port = env('GATEWAY_PORT', cfg.services.gateway.port);
const host = cfg.services.gateway.host;
try {
  checkAdminToken('gateway', host, cfg.services.gateway.adminToken);
} catch (err) {
  console.error((err as Error).message);
  process.exit(2);
}
const defaults = defaultOptions();
const pool = createPool(cfg, { max: 6, applicationName: 'marquee-gateway' });
pool.on('error', (err) => console.error(`gateway: idle database connection failed: ${err.message}`));

const gateway = new Gateway(pool, {
  ...defaults,
  adminToken: cfg.services.gateway.adminToken,
  initialMainUrl: process.env.GATEWAY_MAIN_URL ?? `http://127.0.0.1:${cfg.services.inferenceMain.port}`,
  nightlyBudgetMs: env('GATEWAY_NIGHTLY_BUDGET_MS', defaults.nightlyBudgetMs),
  mainDeadlineMs: env('GATEWAY_MAIN_DEADLINE_MS', defaults.mainDeadlineMs),
  flushIntervalMs: env('GATEWAY_FLUSH_MS', defaults.flushIntervalMs),
  healthIntervalMs: env('GATEWAY_HEALTH_MS', defaults.healthIntervalMs),
});

// Postgres holds the routing state: wait for it a while rather than start routing blindly.
for (let attempt = 1; ; attempt++) {
  try {
    await gateway.loadRouting();
    break;
  } catch (err) {
    if (attempt >= 30) throw err;
    console.error(`gateway: cannot read the routing state yet (${(err as Error).message}); retrying`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}
const server = await gateway.start(port, host);
const s = gateway.current();
console.log(`gateway: listening on ${host}:${(server.address() as AddressInfo).port}; main ${s.mainUrl} (${s.mainVersion}), nightly ${s.nightlyUrl ?? 'none'} at ${s.nightlyPercent}%`);

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  console.log(`gateway: ${signal}, answering requests in flight and writing the history`);
  await gateway.stop();
  await pool.end();
  console.log('gateway: stopped');
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
