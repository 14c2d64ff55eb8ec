/**
 * `marquee report` on a real platform: the simulator writes a past and live traffic to Kafka, the
 * real ingest fills Postgres, the catalog's fill adds metadata, content vectors go to ChromaDB,
 * a real inference slot (taste-v1) answers behind the real gateway. Three live runs, each judged
 * by the report over its own period:
 * - normal: the report writes both files with sane figures, and no loop is flagged;
 * - `--herd 1` (new users start the first movie of their first list): homogenisation is flagged
 *   (and stale history is not);
 * - `--stall` (lines held back from Kafka, as if ingest were down), reported while it lasts:
 *   the stale-history loop is flagged.
 * Speed 1 throughout, so the simulator's clock (watches) and the gateway's (lists) agree.
 */
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChromaClient } from '../lib/chroma.ts';
import { loadConfig, projectRoot } from '../lib/config.ts';
import { databaseUrl } from '../lib/db.ts';
import { kafkaClient, topicOffsets } from '../lib/kafka.ts';
import { buildVectors } from '../lib/vectors/build.ts';
import { fillOnce } from '../services/catalog/fill.ts';
import { scratchDatabase } from './support/db.ts';
import { deleteTopic, ingestedCount, spawnIngest } from './support/ingest.ts';
import { spawnService, waitForHttp, type Service } from './support/processes.ts';
import { requireStack } from './support/servers.ts';
import { freePort } from '../testkit/net.ts';

const cfg = loadConfig();
const tag = randomBytes(3).toString('hex');
const topic = `report-e2e-${tag}`;
const collection = `report_e2e_${tag}_content`;
const WORLD = ['--seed', '7', '--movies', '400', '--users', '100000'];
const TUNE_IN_MS = 60_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function topicEnd(): Promise<number> {
  const admin = kafkaClient(cfg, 'report-e2e').admin();
  await admin.connect();
  try {
    return (await topicOffsets(admin, topic)).reduce((s, p) => s + Number(p.high), 0);
  } finally {
    await admin.disconnect();
  }
}

describe('marquee report on a simulated platform', () => {
  let db: Awaited<ReturnType<typeof scratchDatabase>>;
  let url: string;
  const procs: { stop(): Promise<void> }[] = [];
  let ingest: ReturnType<typeof spawnIngest>;
  let apiPort: number, gateway: string;
  const out = mkdtempSync(path.join(os.tmpdir(), 'marquee-report-e2e-'));

  const caughtUp = async () => {
    const end = await topicEnd();
    const deadline = Date.now() + 120_000;
    while ((await ingestedCount(db.pool, topic)) < end) {
      if (Date.now() > deadline) throw new Error(`ingest did not catch up with ${end} messages:\n${ingest.output.join('').slice(-2000)}`);
      await sleep(250);
    }
  };
  const fill = () => fillOnce(db.pool, `http://127.0.0.1:${apiPort}`, { rate: 5000, burst: 500, concurrency: 32, batchSize: 1000 });

  /** Runs the live simulator for `seconds` with extra flags; `during` runs while it still goes. */
  async function live(seconds: number, flags: string[], during?: () => Promise<void>): Promise<{ since: Date; until: Date }> {
    // The simulator tunes in with sessions in progress whose first lines all land in the first
    // minute: the report starts after that flood.
    const since = new Date(Date.now() + TUNE_IN_MS);
    const port = await freePort();
    const sim = spawnService('services/simulator/main.ts', { MARQUEE_POSTGRES_URL: url },
      [...WORLD, '--rate', '1200', '--speed', '1', '--duration', `${seconds}s`, '--topic', topic, '--port', String(port), '--gateway', gateway, ...flags]);
    procs.push(sim);
    await waitForHttp(`http://127.0.0.1:${port}/healthz`, 60_000, 'simulator');
    if (during) { await sleep((seconds - 10) * 1000); await during(); }
    await new Promise<void>((resolve) => { if (sim.exitCode !== null) resolve(); else sim.once('exit', () => resolve()); });
    // The period ends with the traffic: the catch-up and fill below would add a tail of windows
    // with no new lists, whose few watches are noise to the detectors.
    const until = new Date();
    if (sim.exitCode !== 0) throw new Error(`simulator exited ${sim.exitCode}:\n${sim.output.join('').slice(-2000)}`);
    await caughtUp();
    await fill();
    await sleep(1000); // the gateway writes its history every 200 ms
    return { since, until };
  }

  function report(p: { since: Date; until: Date }, name: string): Record<string, any> {
    const dir = path.join(out, name);
    const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(projectRoot, 'cli', 'main.ts'), 'report',
      '--since', p.since.toISOString(), '--until', p.until.toISOString(), '--window', '35s', '--out', dir], {
      cwd: projectRoot, encoding: 'utf8', timeout: 120_000,
      env: { ...process.env, MARQUEE_POSTGRES_URL: url, MARQUEE_EVALUATION_ATTRIBUTIONWINDOW: '1m' },
    });
    if (r.status !== 0) throw new Error(`marquee report exited ${r.status}:\n${r.stdout}\n${r.stderr}`);
    console.log(`--- ${name}\n${r.stdout}`);
    return JSON.parse(readFileSync(path.join(dir, 'report.json'), 'utf8'));
  }

  beforeAll(async () => {
    await requireStack(cfg, 'kafka', 'chroma');
    db = await scratchDatabase('reporte2e');
    url = databaseUrl(cfg, db.name);
    apiPort = await freePort();
    // A past: 60,000 lines ending a minute ago, through Kafka and the real ingest. This process
    // stays up as the info API (same world) that the catalog's fill reads metadata from.
    const past = spawnService('services/simulator/main.ts', { MARQUEE_POSTGRES_URL: url },
      [...WORLD, '--rate', '0', '--history', '60000', '--topic', topic, '--port', String(apiPort)]);
    procs.push(past);
    ingest = spawnIngest(url, topic, `report-e2e-${tag}`);
    procs.push({ stop: async () => { if (ingest.exitCode === null) { ingest.kill('SIGTERM'); await new Promise((r) => ingest.once('exit', r)); } } });
    const deadline = Date.now() + 120_000;
    while (!past.output.join('').includes('past activity')) {
      if (Date.now() > deadline || past.exitCode !== null) throw new Error(`no past written:\n${past.output.join('')}`);
      await sleep(250);
    }
    await waitForHttp(`http://127.0.0.1:${apiPort}/healthz`, 60_000, 'simulator');
    await caughtUp();
    await fill();
    await buildVectors(cfg, db.pool, { kind: 'content', collection });
    const spec = JSON.parse(readFileSync(path.join(projectRoot, 'models', 'taste-v1.json'), 'utf8'));
    const specFile = path.join(out, 'taste-e2e.json');
    writeFileSync(specFile, JSON.stringify({ ...spec, version: `taste-e2e-${tag}`, collection }));
    const infPort = await freePort();
    const inference = spawnService('services/inference/main.ts', { MARQUEE_POSTGRES_URL: url, INFERENCE_MODEL: specFile, INFERENCE_PORT: String(infPort) });
    procs.push(inference);
    await waitForHttp(`http://127.0.0.1:${infPort}/healthz`, 120_000, 'inference');
    const gwPort = await freePort();
    const gw: Service = spawnService('services/gateway/main.ts', { MARQUEE_POSTGRES_URL: url, GATEWAY_PORT: String(gwPort), GATEWAY_MAIN_URL: `http://127.0.0.1:${infPort}` });
    procs.push(gw);
    gateway = `http://127.0.0.1:${gwPort}`;
    await waitForHttp(`${gateway}/healthz`, 60_000, 'gateway');
  }, 600_000);

  afterAll(async () => {
    for (const p of procs.reverse()) await p.stop().catch(() => undefined);
    await deleteTopic(cfg, topic).catch(() => undefined);
    await db?.drop();
    await createChromaClient(cfg).deleteCollection({ name: collection }).catch(() => undefined);
    rmSync(out, { recursive: true, force: true });
  }, 120_000);

  // First: every live run restarts the same world, whose new accounts take the same ids, so only
  // the first run's new users are new (a later run's were created, and watched, before).
  // A short live run is mostly the sessions it tuned in to, and a new user's first visit comes
  // 20 s to 3 min after the account: at the default 2 % of activities too few newcomers would be
  // judged (17, all in one pooled window, on a loaded CI machine), so this run makes five times as
  // many. Amplification is left out: herded newcomers all take the top list's first movie, so the
  // most recommended movies' watch share may truly rise, and over 3-4 windows its correlation is
  // noise; the normal run below holds that nothing is flagged without a loop.
  it('--herd 1: homogenisation is flagged', async () => {
    const r = report(await live(200, ['--herd', '1', '--new-accounts', '0.1']), 'herd');
    const verdict = (loop: string) => r.loops.verdicts.find((v: { loop: string }) => v.loop === loop);
    const evidence = JSON.stringify(r.loops.verdicts, null, 1);
    expect(verdict('homogenisation').detected, evidence).toBe(true);
    expect(verdict('stale-history').detected, evidence).toBe(false);
  }, 600_000);

  it('a normal run: both files, sane figures, no loop flagged', async () => {
    const r = report(await live(200, []), 'normal');
    const all = r.slots.all;
    expect(all.lists).toBeGreaterThan(300);
    expect(all.gini).toBeGreaterThan(0);
    expect(all.gini).toBeLessThan(1);
    expect(all.coverage).toBeGreaterThan(0);
    expect(all.arp).toBeGreaterThan(0);
    expect(r.slots.main.lists).toBeGreaterThan(0);
    expect(r.topRecommended).toHaveLength(20);
    expect(r.watchesFollowingRecommendation.followed).toBeGreaterThan(0);
    expect(r.userGroups.available).toBe(true);
    expect(readFileSync(path.join(out, 'normal', 'report.html'), 'utf8')).toMatch(/<svg/);
    expect(r.loops.verdicts.filter((v: { detected: boolean }) => v.detected), JSON.stringify(r.loops.verdicts, null, 1)).toEqual([]);
    // REPORT_E2E_KEEP=<dir> keeps this report (the README's figures and chart come from one).
    if (process.env.REPORT_E2E_KEEP) cpSync(path.join(out, 'normal'), process.env.REPORT_E2E_KEEP, { recursive: true });
  }, 600_000);

  it('--stall: reported while the lines are held back, the stale-history loop is flagged', async () => {
    let r: Record<string, any> = {};
    const start = Date.now();
    await live(200, ['--stall', '110s+10m'], async () => {
      await sleep(1000);
      r = report({ since: new Date(start + TUNE_IN_MS), until: new Date() }, 'stall');
    });
    const flagged = r.loops.verdicts.filter((v: { detected: boolean }) => v.detected).map((v: { loop: string }) => v.loop);
    expect(flagged, JSON.stringify(r.loops.verdicts, null, 1)).toContain('stale-history');
  }, 600_000);
});
