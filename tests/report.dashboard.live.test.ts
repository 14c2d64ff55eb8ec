/**
 * The live dashboard against running services: a real inference slot (local process) behind the
 * real gateway under open-loop traffic, the real ingest reading a scratch topic that gets lines
 * all along, a Prometheus of the test's own (Debian's binary, the project's generated config
 * scraping this test's gateway and ingest every second), and the dashboard pointed at it and at
 * the scratch database. The stack's Prometheus on :9090 cannot serve here: it scrapes the ports in
 * temporal.yaml, not the free ports a test runs on.
 *
 * In headless Chromium every panel's drawn chart (the echarts instance's series) holds finite
 * points: request rate and p99 per slot, fallback rate, ingest rate and lag from Prometheus;
 * exposure Gini, coverage and the answers per slot from Postgres; and the release in flight is
 * shown. Nightly is routed to a closed port, so a share of the requests falls back to main: the
 * fallback panel has something to show, and the request-rate panel two slots.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, stateDir, type Config } from '../lib/config.ts';
import { databaseUrl } from '../lib/db.ts';
import { atFromMs, formatEvent } from '../lib/events/format.ts';
import { ensureTopic, idempotentProducer, kafkaClient, topicOffsets } from '../lib/kafka.ts';
import { writeMonitoringFiles } from '../lib/monitoring/prometheus-config.ts';
import { prometheusArgs } from '../stack/components/prometheus.ts';
import { inferenceWorld, startGateway, type GatewayProc, type InferenceSlot } from '../testkit/inference.ts';
import { openLoop } from '../testkit/load.ts';
import { freePort, request, waitForHttp } from '../testkit/net.ts';
import { alive, spawnTs, stop, type Proc } from '../testkit/processes.ts';
import { inkShare, launchChromium } from './support/browser.ts';
import { scratchDatabase } from './support/db.ts';
import { deleteTopic } from './support/ingest.ts';
import { requireServer } from './support/servers.ts';

const cfg = loadConfig();
const tag = randomBytes(3).toString('hex');
const topic = `dashboard-live-${tag}`;
const NIGHTLY_PERCENT = 30;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
// The screenshot outlives the run (the scratch directory does not), for a look at what was checked.
const ARTIFACTS = path.join(stateDir(), 'test-artifacts');

interface PanelData { id: string; source: string; series: { name: string; points: [number, number | null][] }[]; note: string | null }
/** What the page drew: per panel, each echarts series' name and data as the chart holds them. */
type Drawn = Record<string, { source: string; note: string; series: { name: string; data: [number, number | null][] }[] }>;

/** The config the private Prometheus is generated from: this test's ports, nothing of the stack's. */
function privateMonitoring(base: Config, p: { gateway: number; ingest: number; prometheus: number; unused: number }): Config {
  return {
    ...base,
    services: {
      ...base.services,
      gateway: { ...base.services.gateway, port: p.gateway },
      ingest: { ...base.services.ingest, port: p.ingest },
      // No worker here: the slot discovery job finds nothing (and disturbs nothing).
      worker: { ...base.services.worker, port: p.unused },
    },
    // Alerts must not reach the stack's Alertmanager (and its mail): a port nothing listens on.
    monitoring: { ...base.monitoring, prometheusPort: p.prometheus, alertmanagerPort: p.unused },
  };
}

/** Debian's Prometheus as the stack runs it (prometheusArgs), its output kept for error messages. */
function spawnPrometheus(configFile: string, dataDir: string, port: number): Proc {
  const p = spawn('prometheus', prometheusArgs(configFile, dataDir, port), { stdio: ['ignore', 'pipe', 'pipe'] }) as Proc;
  p.name = 'prometheus';
  p.output = [];
  const keep = (c: Buffer) => { p.output.push(c.toString()); if (p.output.length > 400) p.output.splice(0, 200); };
  p.stdout!.on('data', keep);
  p.stderr!.on('data', keep);
  return p;
}

/**
 * Until the broker answers offsets for a new topic: on a loaded machine its partitions can still
 * lack a leader after creation, and ingest exits when its start-up offset query fails.
 */
async function offsetsAnswered(name: string): Promise<void> {
  const admin = kafkaClient(cfg, 'dashboard-live-admin').admin();
  await admin.connect();
  try {
    for (const deadline = Date.now() + 30_000; ;) {
      try {
        await topicOffsets(admin, name, { waitMs: 0 });
        return;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`Kafka gives no offsets for ${name} within 30 s: ${(err as Error).message}`);
        await sleep(500);
      }
    }
  } finally {
    await admin.disconnect();
  }
}

describe('the live dashboard against running services', () => {
  let db: Awaited<ReturnType<typeof scratchDatabase>>;
  let world: Awaited<ReturnType<typeof inferenceWorld>>;
  let slot: InferenceSlot;
  let gateway: GatewayProc;
  let ingest: Proc, prometheus: Proc, dashboard: Proc;
  let dashboardUrl: string;
  let dir: string;
  let stopping = false;
  let background: Promise<unknown>[] = [];
  const failures: string[] = [];

  /** Recommendation traffic (~25 req/s) until the test ends. */
  async function traffic(): Promise<void> {
    while (!stopping) {
      await openLoop({ rps: 25, seconds: 5, url: (i) => `${gateway.url}/recommend/${(i * 7919) % world.users}`, onReply: (r) => { if (r.status !== 200 && !stopping) failures.push(`${r.status} ${r.error ?? ''}`); } });
    }
  }

  /** Watch lines (~80/s) of the world's users into the scratch topic until the test ends. */
  async function lines(): Promise<void> {
    const producer = idempotentProducer(kafkaClient(cfg, 'dashboard-live'));
    await producer.connect();
    try {
      for (let round = 0; !stopping; round++) {
        const at = atFromMs(Date.now());
        const messages = Array.from({ length: 20 }, (_, k) => {
          const userId = (round * 20 + k) % world.users;
          const movieId = world.movieIds[(round * 7 + k * 13) % world.movieIds.length];
          return { key: String(userId), value: formatEvent({ kind: 'watch', ...at, userId, movieId, minute: round % 90 }) };
        });
        await producer.send({ topic, acks: -1, messages });
        await sleep(250);
      }
    } finally {
      await producer.disconnect();
    }
  }

  beforeAll(async () => {
    await requireServer('kafka', Number(cfg.kafka.brokers[0].split(':')[1]), cfg.kafka.brokers[0].split(':')[0]);
    await requireServer('chroma', Number(new URL(cfg.chroma.url).port), new URL(cfg.chroma.url).hostname);
    const ports = { gateway: await freePort(), ingest: await freePort(), prometheus: await freePort(), unused: await freePort(), dashboard: await freePort(), deadNightly: await freePort() };
    db = await scratchDatabase('dashlive');
    const url = databaseUrl(cfg, db.name);
    world = await inferenceWorld(cfg, db, { movies: 200, users: 500 });
    slot = await world.startSlot('main');
    // A release baking with nightly on a port nothing listens on: its users fall back to main.
    await db.pool.query(`INSERT INTO releases (id, model_spec, phase, phase_times, metrics, started_at)
      VALUES ('v-dash', 'models/affinity-v1.json', 'baking', jsonb_build_object('deploying', (now() - interval '10 minutes')::text, 'baking', (now() - interval '5 minutes')::text),
              '{"main_hit_rate": 0.31, "nightly_hit_rate": 0.35}', now() - interval '10 minutes')`);
    await db.pool.query(`INSERT INTO routing_state (id, main_url, main_version, nightly_url, nightly_version, nightly_percent, release_id)
      VALUES (1, $1, $2, $3, 'v-dash', $4, 'v-dash')`, [slot.url, slot.version, `http://127.0.0.1:${ports.deadNightly}`, NIGHTLY_PERCENT]);
    gateway = await startGateway(cfg, db.name, slot.url, {}, ports.gateway);

    await ensureTopic(cfg, topic, 2);
    await offsetsAnswered(topic);
    ingest = spawnTs('ingest', 'services/ingest/main.ts', { MARQUEE_POSTGRES_URL: url, INGEST_TOPIC: topic, INGEST_GROUP_ID: `dashboard-live-${tag}`, INGEST_PORT: String(ports.ingest), MARQUEE_KAFKA_QUIET: '1' });
    await waitForHttp(`http://127.0.0.1:${ports.ingest}/healthz`, 60_000, (r) => r.status === 200, () => alive(ingest))
      .catch((err) => { throw new Error(`${(err as Error).message}\n${ingest.output.join('')}`); });

    dir = mkdtempSync(path.join(os.tmpdir(), 'marquee-dashboard-live-'));
    const files = writeMonitoringFiles(privateMonitoring(cfg, ports), path.join(dir, 'config'), { services: ['gateway', 'ingest'], scrapeInterval: '1s', sdRefresh: '30s' });
    prometheus = spawnPrometheus(files.prometheus, path.join(dir, 'data'), ports.prometheus);
    const promUrl = `http://127.0.0.1:${ports.prometheus}`;
    await waitForHttp(`${promUrl}/-/ready`, 60_000, (r) => r.status === 200, () => alive(prometheus))
      .catch((err) => { throw new Error(`${(err as Error).message}\n${prometheus.output.join('')}`); });

    dashboard = spawnTs('dashboard', 'services/dashboard/main.ts', {
      MARQUEE_POSTGRES_URL: url, DASHBOARD_PORT: String(ports.dashboard), DASHBOARD_PROMETHEUS_URL: promUrl,
      DASHBOARD_RANGE: '5m', DASHBOARD_REFRESH_MS: '2000',
    });
    dashboardUrl = `http://127.0.0.1:${ports.dashboard}`;
    await waitForHttp(`${dashboardUrl}/healthz`, 60_000, (r) => r.status === 200, () => alive(dashboard))
      .catch((err) => { throw new Error(`${(err as Error).message}\n${dashboard.output.join('')}`); });
    background = [traffic(), lines()];
  }, 240_000);

  afterAll(async () => {
    stopping = true;
    await Promise.allSettled(background);
    for (const p of [dashboard, prometheus, ingest, gateway?.proc, slot?.proc]) await stop(p);
    await deleteTopic(cfg, topic).catch(() => undefined);
    await world?.cleanup();
    await db?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it('draws every panel with finite, non-empty series from Prometheus and Postgres, and the release in flight', async () => {
    // Until Prometheus holds a few steps of every query (15 s apart) and Postgres a minute bucket.
    const deadline = Date.now() + 150_000;
    let data: { prometheus: { reachable: boolean; error: string | null }; panels: PanelData[] } | undefined;
    const points = (p: PanelData) => p.series.reduce((n, s) => n + s.points.filter((x) => x[1] !== null).length, 0);
    const ready = () => data !== undefined && data.panels.every((p) => points(p) >= (p.source === 'prometheus' ? 3 : 1));
    while (!ready()) {
      if (Date.now() > deadline) throw new Error(`panels still empty after 150 s: ${JSON.stringify(data?.panels.map((p) => [p.id, points(p), p.note]))}\n${prometheus.output.slice(-10).join('')}`);
      await sleep(2000);
      const r = await request(`${dashboardUrl}/dashboard/data`);
      if (r.status === 200) data = JSON.parse(r.body);
    }
    expect(data!.prometheus).toMatchObject({ reachable: true, error: null });

    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      const foreign: string[] = [];
      page.on('request', (r) => { if (!r.url().startsWith('data:') && !r.url().startsWith(dashboardUrl)) foreign.push(r.url()); });
      await page.setViewport({ width: 1300, height: 1600 });
      await page.goto(`${dashboardUrl}/dashboard`, { waitUntil: 'load' });
      // The first draw on load, then one by the page's own timer.
      await page.waitForFunction('window.marqueeRefreshed >= 2', { timeout: 30_000 });
      // A string: the project compiles without the DOM library; this runs in the page.
      const drawn = (await page.evaluate(`(() => {
        const out = {};
        for (const el of document.querySelectorAll('#panels .panel')) {
          const chart = echarts.getInstanceByDom(el.querySelector('.chart'));
          out[el.id.replace(/^panel-/, '')] = {
            source: el.dataset.source, note: el.querySelector('.note').textContent,
            series: chart.getOption().series.map((s) => ({ name: s.name, data: s.data })),
          };
        }
        return out;
      })()`)) as Drawn;

      expect(Object.keys(drawn).sort()).toEqual(['exposure-coverage', 'exposure-gini', 'fallback-rate', 'ingest-lag', 'ingest-rate', 'p99', 'request-rate',
        'served-fallback', 'served-p99', 'served-rate']);
      const values = (id: string) => drawn[id].series.flatMap((s) => s.data.map((x) => x[1]).filter((v): v is number => v !== null));
      for (const [id, p] of Object.entries(drawn)) {
        expect(p.note, id).toBe('');
        expect(p.series.length, id).toBeGreaterThan(0);
        for (const s of p.series) for (const [t] of s.data) expect(Number.isFinite(t), `${id} time`).toBe(true);
        const v = values(id);
        expect(v.length, id).toBeGreaterThanOrEqual(p.source === 'prometheus' ? 3 : 1);
        for (const x of v) expect(Number.isFinite(x), `${id}: ${x}`).toBe(true);
      }
      // Per slot: users are assigned to both; answers come from main (nightly does not answer), or
      // from the popular list when main misses its deadline on a loaded machine.
      expect(drawn['request-rate'].series.map((s) => s.name).sort()).toEqual(['main', 'nightly']);
      const answering = (id: string) => drawn[id].series.map((s) => s.name);
      expect(answering('p99')).toContain('main');
      expect(answering('p99')).not.toContain('nightly');
      expect(Math.max(...values('request-rate'))).toBeGreaterThan(2);
      expect(Math.max(...values('p99'))).toBeGreaterThan(0);
      expect(Math.max(...values('p99'))).toBeLessThan(2.5);
      // At least about the nightly percent of the requests fall back (users are hashed, so not exactly).
      const fb = values('fallback-rate');
      expect(fb[fb.length - 1]).toBeGreaterThan(NIGHTLY_PERCENT / 100 / 2);
      expect(Math.max(...fb)).toBeLessThanOrEqual(1);
      expect(Math.max(...values('ingest-rate'))).toBeGreaterThan(10);
      expect(Math.min(...values('ingest-lag'))).toBeGreaterThanOrEqual(0);
      for (const x of values('exposure-gini')) { expect(x).toBeGreaterThanOrEqual(0); expect(x).toBeLessThanOrEqual(1); }
      for (const x of values('exposure-coverage')) { expect(x).toBeGreaterThan(0); expect(x).toBeLessThanOrEqual(1); }
      expect(answering('served-rate')).toContain('main');
      expect(answering('served-rate')).not.toContain('nightly');

      expect(await page.$eval('#banner', (el) => el.textContent)).toMatch(new RegExp(`^Prometheus http://127\\.0\\.0\\.1:\\d+ · updated`));
      const release = await page.$eval('#release-body', (el) => el.textContent);
      expect(release).toMatch(/v-dash/);
      expect(release).toMatch(/baking/);
      expect(release).toMatch(new RegExp(`nightly_percent\\s*${NIGHTLY_PERCENT}`));
      expect(release).toMatch(/nightly_hit_rate/);
      for (const id of Object.keys(drawn)) expect(await inkShare(page, (await page.$(`#panel-${id}`))!), id).toBeGreaterThan(0.02);

      mkdirSync(ARTIFACTS, { recursive: true });
      const shot = await page.screenshot({ fullPage: true });
      writeFileSync(path.join(ARTIFACTS, 'dashboard-live.png'), shot);
      console.log(`dashboard screenshot: ${path.join(ARTIFACTS, 'dashboard-live.png')}`);
      expect(shot.length).toBeGreaterThan(20_000);
      expect(foreign).toEqual([]);
    } finally {
      await browser.close();
    }
    expect(failures).toEqual([]);
  }, 240_000);
});
