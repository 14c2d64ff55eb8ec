/**
 * The gateway process. Port: GATEWAY_PORT or services.gateway.port (0 picks a free one; the
 * "listening" line says which). Main's URL for a database without routing state: GATEWAY_MAIN_URL
 * or http://127.0.0.1:<services.inferenceMain.port>. Budgets and intervals can be tuned with
 * GATEWAY_NIGHTLY_BUDGET_MS, GATEWAY_MAIN_DEADLINE_MS, GATEWAY_ANSWER_DEADLINE_MS,
 * GATEWAY_MAX_PENDING (calls in flight per slot URL), GATEWAY_FLUSH_MS, GATEWAY_HEALTH_MS.
 * GATEWAY_NICE sets the process's scheduling priority (-20..19; below 0 needs root or
 * CAP_SYS_NICE): on a machine shared with busy neighbours a negative value lets the gateway run
 * as soon as a request arrives, which is what keeps its deadline timers on time.
 * GATEWAY_RT_PRIORITY (1..99) goes further: real-time round-robin scheduling (chrt), so a
 * runnable gateway always runs before ordinary processes.
 */
import os from 'node:os';
import type { AddressInfo } from 'node:net';
import { checkAdminToken } from '../../lib/admin-token.ts';
import { loadConfig } from '../../lib/config.ts';
import { createPool } from '../../lib/db.ts';
import { setProcessPriority, setRealtime } from '../../lib/priority.ts';
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
if (process.env.GATEWAY_NICE !== undefined) {
  const nice = Number(process.env.GATEWAY_NICE);
  if (!Number.isInteger(nice) || nice < -20 || nice > 19) {
    console.error(`gateway: GATEWAY_NICE must be an integer from -20 to 19, got "${process.env.GATEWAY_NICE}"`);
    process.exit(2);
  }
  try {
    const { threads } = setProcessPriority(nice);
    console.log(`gateway: scheduling priority set to nice ${nice} (${threads} threads)`);
  } catch (err) {
    // Running at the default priority is still correct, only less robust under contention.
    console.error(`gateway: cannot set nice ${nice} (${(err as Error).message}); a negative value needs root or CAP_SYS_NICE; running at nice ${os.getPriority(0)}`);
  }
}
if (process.env.GATEWAY_RT_PRIORITY !== undefined) {
  const rt = Number(process.env.GATEWAY_RT_PRIORITY);
  if (!Number.isInteger(rt) || rt < 1 || rt > 99) {
    console.error(`gateway: GATEWAY_RT_PRIORITY must be an integer from 1 to 99, got "${process.env.GATEWAY_RT_PRIORITY}"`);
    process.exit(2);
  }
  try {
    setRealtime(rt);
    console.log(`gateway: real-time round-robin scheduling at priority ${rt}`);
  } catch (err) {
    console.error(`gateway: cannot switch to real-time scheduling (${(err as Error).message.split('\n')[0]}); it needs chrt and root or CAP_SYS_NICE; running with normal scheduling`);
  }
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
  answerDeadlineMs: env('GATEWAY_ANSWER_DEADLINE_MS', defaults.answerDeadlineMs),
  maxPendingPerUrl: env('GATEWAY_MAX_PENDING', defaults.maxPendingPerUrl),
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
