/**
 * Monitoring on real servers: Debian's Prometheus and Alertmanager, run with the config the
 * project generates (lib/monitoring), scraping a real gateway, inference slot and worker on ports
 * of this test's own, and mailing to an SMTP server of the test's own.
 *
 * - every target is up, the slot found through the worker's discovery endpoint;
 * - the recorded p99 per slot has numbers under traffic;
 * - a service killed and held down by the supervisor (restarts held off) past the TargetDown
 *   delay (5 s here instead of 1 min) mails an alert naming it, and its return a resolved one.
 *
 * The gateway and the worker run under the Supervisor with the specs of `marquee start`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catchMail, type MailCatcher } from '../testkit/mail.ts';
import { freePort, request, waitForHttp } from '../testkit/net.ts';

const tag = randomBytes(3).toString('hex');
const ports = { worker: await freePort(), prometheus: await freePort(), alertmanager: await freePort(), smtp: await freePort(), gateway: await freePort() };
// Set before anything loads the config: the generated files and the spawned services read it.
Object.assign(process.env, {
  MARQUEE_SERVICES_WORKER_PORT: String(ports.worker),
  MARQUEE_SERVICES_GATEWAY_PORT: String(ports.gateway),
  MARQUEE_MONITORING_PROMETHEUSPORT: String(ports.prometheus),
  MARQUEE_MONITORING_ALERTMANAGERPORT: String(ports.alertmanager),
  MARQUEE_SMTP_PORT: String(ports.smtp),
  MARQUEE_SMTP_TO: 'oncall@monitoring.test',
  MARQUEE_TEMPORAL_TASKQUEUE: `monitoring-${tag}`,
});

const { loadConfig } = await import('../lib/config.ts');
const { databaseUrl } = await import('../lib/db.ts');
const { writeMonitoringFiles } = await import('../lib/monitoring/prometheus-config.ts');
const { prometheusArgs } = await import('../stack/components/prometheus.ts');
const { alertmanagerArgs, ALERTMANAGER_BINARY } = await import('../stack/components/alertmanager.ts');
const { inferenceWorld } = await import('../testkit/inference.ts');
const { serviceSpecs, superviseServices } = await import('../cli/services.ts');
const { openLoop } = await import('../testkit/load.ts');
const { stop } = await import('../testkit/processes.ts');
const { scratchDatabase } = await import('./support/db.ts');
const { requireStack } = await import('./support/servers.ts');

const cfg = loadConfig();
const prom = `http://127.0.0.1:${ports.prometheus}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let db: Awaited<ReturnType<typeof scratchDatabase>>;
let world: Awaited<ReturnType<typeof inferenceWorld>>;
let slot: Awaited<ReturnType<Awaited<ReturnType<typeof inferenceWorld>>['startSlot']>>;
const gateway = { url: `http://127.0.0.1:${ports.gateway}` };
let supervisor: import('../lib/supervise.ts').Supervisor | undefined;
const serviceLog: string[] = [];
const daemons: ChildProcess[] = [];
const daemonOutput: string[] = [];
let smtp: MailCatcher | undefined;
const mails: string[] = [];
let dir: string;
let loadDone: Promise<unknown> = Promise.resolve();
let loadStop = false;
const failures: string[] = [];

/** Alertmanager sends quoted-printable bodies: undo the soft line breaks and =XX escapes before matching text. */
const unQuote = (raw: string) => raw.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));

function daemon(cmd: string, args: string[]): ChildProcess {
  const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const keep = (c: Buffer) => { daemonOutput.push(`[${cmd}] ${c}`); if (daemonOutput.length > 400) daemonOutput.splice(0, 200); };
  p.stdout!.on('data', keep);
  p.stderr!.on('data', keep);
  daemons.push(p);
  return p;
}

/** Recommendation traffic through the gateway until the test ends (~40 req/s). */
function startLoad(): void {
  const users = world.users;
  loadDone = (async () => {
    while (!loadStop) {
      await openLoop({ rps: 40, seconds: 5, url: (i) => `${gateway.url}/recommend/${(i * 7919) % users}`, onReply: (r) => { if (r.status !== 200 && !loadStop) failures.push(`${r.status} ${r.error ?? ''}`); } });
    }
  })();
}

async function promQuery(q: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
  const r = await request(`${prom}/api/v1/query?query=${encodeURIComponent(q)}`);
  if (r.status !== 200) throw new Error(`query ${q}: ${r.status} ${r.body}`);
  return JSON.parse(r.body).data.result;
}

async function targets(): Promise<{ labels: Record<string, string>; health: string; lastError: string }[]> {
  const r = await request(`${prom}/api/v1/targets?state=active`);
  return JSON.parse(r.body).data.activeTargets;
}

async function until<T>(what: string, f: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await f();
      if (v !== undefined) return v;
    } catch (err) { last = err; }
    await sleep(500);
  }
  throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}\n${daemonOutput.slice(-20).join('')}`);
}

beforeAll(async () => {
  await requireStack(cfg, 'chroma', 'temporal');
  db = await scratchDatabase('monitoring');
  world = await inferenceWorld(cfg, db, { movies: 200, users: 500 });
  slot = await world.startSlot('main');
  supervisor = superviseServices(serviceSpecs(['gateway', 'worker'], { ...process.env, MARQUEE_POSTGRES_URL: databaseUrl(cfg, db.name), GATEWAY_MAIN_URL: slot.url }), {
    log: (name, line) => serviceLog.push(`${name}| ${line}`),
    onOutput: (name, _s, line) => { serviceLog.push(`${name}| ${line}`); if (serviceLog.length > 2000) serviceLog.splice(0, 1000); },
  });
  supervisor.start();
  for (const url of [`${gateway.url}/healthz`, `http://127.0.0.1:${ports.worker}/healthz`]) {
    await waitForHttp(url, 120_000).catch((err) => { throw new Error(`${(err as Error).message}\n${serviceLog.slice(-30).join('\n')}`); });
  }

  smtp = await catchMail(ports.smtp, { into: mails, decode: unQuote });

  dir = mkdtempSync(path.join(os.tmpdir(), 'marquee-monitoring-'));
  const files = writeMonitoringFiles(cfg, path.join(dir, 'config'), {
    services: ['gateway', 'worker'], scrapeInterval: '1s', sdRefresh: '2s', groupWait: '1s', groupInterval: '2s',
    // Only TargetDown is meant to fire here; the others would need minutes of bad numbers.
    timings: { targetDown: '5s', sustained: '1h', lagGrowing: '1h' },
  });
  daemon('prometheus', prometheusArgs(files.prometheus, path.join(dir, 'prometheus'), ports.prometheus));
  daemon(ALERTMANAGER_BINARY, alertmanagerArgs(files.alertmanager, path.join(dir, 'alertmanager'), ports.alertmanager));
  await waitForHttp(`${prom}/-/ready`, 60_000);
  await waitForHttp(`http://127.0.0.1:${ports.alertmanager}/-/ready`, 60_000);
  startLoad();
}, 240_000);

afterAll(async () => {
  loadStop = true;
  await loadDone;
  for (const p of daemons) await stop(p);
  await supervisor?.stop();
  await stop(slot?.proc);
  await smtp?.close();
  await world?.cleanup();
  await db?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 120_000);

describe('Prometheus with the generated config', () => {
  it('lists every target up, the inference slot discovered through the worker', async () => {
    const up = await until('every target up', async () => {
      const t = await targets();
      return t.length >= 5 && t.every((x) => x.health === 'up') ? t : undefined;
    }, 60_000);
    const byService = Object.fromEntries(up.map((t) => [t.labels.service, t]));
    expect(Object.keys(byService).sort()).toEqual(['alertmanager', 'gateway', 'inference-main', 'prometheus', 'worker']);
    expect(byService['inference-main'].labels).toMatchObject({ slot: 'main', version: slot.version, instance: `127.0.0.1:${slot.port}` });
  }, 90_000);

  it('records p50/p99 latency and request rate per slot from the traffic', async () => {
    const p99 = await until('recorded p99 per slot', async () => {
      const r = await promQuery('slot:gateway_latency_seconds:p99');
      const main = r.find((x) => x.metric.slot === 'main');
      return main && Number.isFinite(Number(main.value[1])) ? r : undefined;
    }, 60_000);
    const mainP99 = Number(p99.find((x) => x.metric.slot === 'main')!.value[1]);
    expect(mainP99).toBeGreaterThan(0);
    expect(mainP99).toBeLessThan(2.5);
    const inference = await until('the slot\'s own p99', async () => {
      const r = await promQuery('slot:inference_latency_seconds:p99{slot="main"}');
      return r.length === 1 && Number.isFinite(Number(r[0].value[1])) ? Number(r[0].value[1]) : undefined;
    }, 30_000);
    expect(inference).toBeGreaterThan(0);
    // 40 req/s are sent: once the traffic has run for the rule's minute, the recorded rate says so.
    const rate = await until('the recorded request rate near 40/s', async () => {
      const v = Number((await promQuery('slot:gateway_requests:rate1m{slot="main"}'))[0]?.value[1]);
      return v > 30 ? v : undefined;
    }, 90_000);
    expect(rate).toBeLessThan(50);
    expect(failures).toEqual([]);
  }, 180_000);
});

describe('what Prometheus finds', () => {
  it('discovers nightly while the routing state names it, and drops it when it is removed', async () => {
    const nightly = await world.startSlot('nightly');
    try {
      const auth = { authorization: `Bearer ${cfg.services.gateway.adminToken}`, 'content-type': 'application/json', 'x-marquee-actor': 'monitoring-test' };
      const put = (body: object) => request(`${gateway.url}/admin/routing`, { method: 'PUT', headers: auth, body: JSON.stringify(body) });
      expect((await put({ nightlyUrl: nightly.url, nightlyVersion: nightly.version, nightlyPercent: 0 })).status).toBe(200);
      const found = await until('inference-nightly up', async () => (await targets()).find((t) => t.labels.service === 'inference-nightly' && t.health === 'up'), 30_000);
      expect(found.labels).toMatchObject({ slot: 'nightly', version: nightly.version, instance: `127.0.0.1:${nightly.port}` });
      expect((await put({ nightlyUrl: null, nightlyVersion: null })).status).toBe(200);
      await until('inference-nightly gone', async () => ((await targets()).some((t) => t.labels.service === 'inference-nightly') ? undefined : true), 30_000);
    } finally {
      await stop(nightly.proc);
    }
  }, 90_000);

  it('reads the release phase clock from the worker, for ReleaseStuck', async () => {
    await db.pool.query(`INSERT INTO releases (id, model_spec, phase, phase_times, started_at)
      VALUES ('v-stuck', 'models/x.json', 'deploying', jsonb_build_object('deploying', (now() - interval '30 minutes')::text), now() - interval '40 minutes')`);
    try {
      const r = await until('the phase age in Prometheus', async () => {
        const v = await promQuery('marquee_release_phase_age_seconds{version="v-stuck"}');
        return v.length ? v : undefined;
      }, 30_000);
      expect(r[0].metric.phase).toBe('deploying');
      expect(Number(r[0].value[1])).toBeGreaterThan(1790);
      expect(Number(r[0].value[1])).toBeLessThan(1900);
      const expected = await promQuery('marquee_release_phase_expected_seconds{version="v-stuck"}');
      expect(Number(expected[0].value[1])).toBe(600);
      // What ReleaseStuck compares: 30 minutes in a phase expected to take 10.
      expect(await promQuery('marquee_release_phase_age_seconds > 2 * marquee_release_phase_expected_seconds')).toHaveLength(1);
    } finally {
      await db.pool.query("DELETE FROM releases WHERE id = 'v-stuck'");
    }
  }, 60_000);
});

describe('alerts by e-mail', () => {
  it('mails a TargetDown naming the service when it is kept down, and a resolved mail when it is back', async () => {
    mails.length = 0;
    loadStop = true;
    await loadDone;
    const downAt = Date.now();
    // Killed, and kept down: the supervisor would otherwise have it back within a second.
    await supervisor!.hold('gateway', 'SIGKILL');
    const firing = await until('the firing mail', async () => mails.find((m) => /Subject: \[FIRING\] TargetDown: gateway/.test(m)), 60_000);
    // Not before the 5 s `for:` of this test's rules.
    expect(Date.now() - downAt).toBeGreaterThan(5000);
    expect(firing).toContain('gateway is down');
    expect(firing).toContain(`127.0.0.1:${ports.gateway}`);
    expect(firing).toMatch(/Since: +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC/);
    expect(firing).toContain('First check: the gateway log (`npx marquee start` output); nobody gets answers while it is down');
    expect(firing).toContain(`Alerts: http://127.0.0.1:${ports.alertmanager}`);
    expect(firing).toContain('To: oncall@monitoring.test');

    supervisor!.release('gateway');
    await waitForHttp(`${gateway.url}/healthz`, 30_000);
    const resolved = await until('the resolved mail', async () => mails.find((m) => /Subject: \[RESOLVED\] TargetDown: gateway/.test(m)), 60_000);
    expect(resolved).toMatch(/Resolved: +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC/);
    // Only the gateway went down.
    expect(mails.filter((m) => /Subject: \[FIRING\]/.test(m) && !/TargetDown: gateway/.test(m))).toEqual([]);
  }, 150_000);
});
