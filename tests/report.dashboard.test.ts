/**
 * The live dashboard in headless Chromium against Postgres: the Postgres panels (exposure Gini and
 * coverage over time, answers, p99 and fallbacks per slot) draw non-empty series, the release in
 * flight is shown, the page refreshes itself, loads nothing from the network, and says
 * "Prometheus not reachable" for the Prometheus panels when Prometheus does not answer.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../lib/config.ts';
import { databaseUrl } from '../lib/db.ts';
import { inkShare, launchChromium } from './support/browser.ts';
import { scratchDatabase } from './support/db.ts';
import { loopWorld, writeLoopWorld } from './support/loop-worlds.ts';
import { spawnService, waitForHttp, type Service } from './support/processes.ts';

const HOUR = 3_600_000;
type PanelState = Record<string, { source: string; points: number; note: string | null }>;

describe('dashboard', () => {
  let db: Awaited<ReturnType<typeof scratchDatabase>>;
  let svc: Service;
  let url: string;

  beforeAll(async () => {
    db = await scratchDatabase('dashboard');
    const now = Date.now();
    await writeLoopWorld(db.pool, loopWorld({ seed: 3, start: now - 2 * HOUR, windows: 2, windowMs: HOUR - 60_000, users: 100 }));
    await db.pool.query(`INSERT INTO releases (id, model_spec, phase, phase_times) VALUES ('v9', 'models/taste-v1.json', 'baking', '{"baking": "2026-01-01T00:00:00Z"}')`);
    await db.pool.query(`INSERT INTO routing_state (id, main_url, main_version, nightly_percent, release_id) VALUES (1, 'http://127.0.0.1:3001', 'seed-baseline', 20, 'v9')`);
    svc = spawnService('services/dashboard/main.ts', {
      MARQUEE_POSTGRES_URL: databaseUrl(loadConfig(), db.name), DASHBOARD_PORT: '0', DASHBOARD_REFRESH_MS: '1500',
      // A closed port: the page must degrade, not fail.
      DASHBOARD_PROMETHEUS_URL: 'http://127.0.0.1:9',
    });
    const deadline = Date.now() + 60_000;
    while (!url && Date.now() < deadline) {
      const m = /dashboard: (http:\/\/127\.0\.0\.1:\d+)\/dashboard/.exec(svc.output.join(''));
      if (m) url = m[1];
      else await new Promise((r) => setTimeout(r, 200));
      if (svc.exitCode !== null) throw new Error(`dashboard exited: ${svc.output.join('')}`);
    }
    if (!url) throw new Error(`dashboard did not start: ${svc.output.join('')}`);
    await waitForHttp(`${url}/healthz`, 30_000);
  });
  afterAll(async () => {
    await svc?.stop();
    await db?.drop();
  });

  it('draws every Postgres panel with data, shows the release, degrades without Prometheus, refreshes itself', async () => {
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      const foreign: string[] = [];
      page.on('request', (r) => { if (!r.url().startsWith('data:') && !r.url().startsWith(url)) foreign.push(r.url()); });
      await page.setViewport({ width: 1300, height: 1400 });
      await page.goto(`${url}/dashboard`, { waitUntil: 'load' });
      await page.waitForFunction('window.marqueeRefreshed >= 2', { timeout: 30_000 });
      const panels = (await page.evaluate('window.marqueePanels')) as PanelState;
      const pg = Object.entries(panels).filter(([, p]) => p.source === 'postgres');
      expect(pg.map(([id]) => id).sort()).toEqual(['exposure-coverage', 'exposure-gini', 'served-fallback', 'served-p99', 'served-rate']);
      for (const [id, p] of pg) expect(p.points, id).toBeGreaterThan(5);
      const prom = Object.entries(panels).filter(([, p]) => p.source === 'prometheus');
      expect(prom.map(([id]) => id).sort()).toEqual(['fallback-rate', 'ingest-lag', 'ingest-rate', 'p99', 'request-rate']);
      for (const [id, p] of prom) expect(p.note, id).toMatch(/Prometheus not reachable at http:\/\/127\.0\.0\.1:9/);
      expect(await page.$eval('#banner', (el) => el.textContent)).toMatch(/Prometheus not reachable/);
      const release = await page.$eval('#release-body', (el) => el.textContent);
      expect(release).toMatch(/v9/);
      expect(release).toMatch(/baking/);
      expect(release).toMatch(/nightly_percent\s*20/);
      for (const [id] of pg) {
        const el = (await page.$(`#panel-${id}`))!;
        expect(await el.$$eval('svg path', (xs) => xs.length), id).toBeGreaterThan(5);
        expect(await inkShare(page, el), id).toBeGreaterThan(0.02);
      }
      expect(foreign).toEqual([]);
    } finally {
      await browser.close();
    }
  });
});
