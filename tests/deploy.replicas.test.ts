/**
 * `marquee deploy main --replicas 2` and `marquee undeploy main` end to end, as an operator runs
 * them: the package's bin in a child process, with the local-process slot runtime
 * (MARQUEE_RUNTIME=process), against a real gateway and a real worker (which serves Prometheus'
 * /sd/inference) on a scratch database, ports and task queue of this file's own, so the shared
 * stack's main slot is never touched. Main's version is a promoted release's label, as it is after
 * any release (not the spec's own version).
 *
 * - both replicas answer /healthz with main's version;
 * - the routing state (the gateway's and the row in Postgres) names both;
 * - the worker's /sd/inference lists both in main's group;
 * - the gateway spreads main's users over both (counted from each replica's own /metrics);
 * - `--replicas 1` unnames and stops the second replica and keeps the first;
 * - `marquee undeploy main` stops every replica (processes gone, ports closed) and unnames them;
 *   with the gateway down it stops them and unnames them in the routing state in Postgres, which a
 *   gateway started afterwards routes by; a second run has nothing to do.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../lib/config.ts';
import { databaseUrl } from '../lib/db.ts';
import { REPLICA_PORT_STEP } from '../lib/runtime/slots.ts';
import { scratchDatabase, type ScratchDatabase } from '../testkit/db.ts';
import { inferenceWorld, served, startGateway, type GatewayProc } from '../testkit/inference.ts';
import { freePort, freePortSpaced, request, waitForHttp } from '../testkit/net.ts';
import { alive, spawnTs, stop, type Proc } from '../testkit/processes.ts';
import { runMarquee } from './support/cli.ts';
import { requireStack } from './support/servers.ts';

const base = loadConfig();
const tag = randomBytes(3).toString('hex');
const release = `cli-replicas-${tag}`;
const home = mkdtempSync(path.join(os.tmpdir(), 'marquee-deploy-replicas-'));
const auth = { authorization: `Bearer ${base.services.gateway.adminToken}` };
const alivePid = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };

describe('marquee deploy main --replicas 2, then undeploy (the bin, local processes)', () => {
  let db: ScratchDatabase;
  let world: Awaited<ReturnType<typeof inferenceWorld>>;
  let env: Record<string, string>;
  let urls: string[];
  let mainPort: number;
  let gateway: GatewayProc;
  let worker: Proc;
  let workerUrl: string;

  const cli = (...args: string[]) => runMarquee(args, { env, timeoutMs: 240_000 });
  const routing = async () => JSON.parse((await request(`${gateway.url}/admin/routing`, { headers: auth })).body) as { mainUrl: string; mainVersion: string; mainReplicas: string[] };
  const routingRow = async () => (await db.pool.query('SELECT main_url, main_version, main_replicas FROM routing_state WHERE id = 1')).rows[0];
  const runFile = (k: number) => path.join(home, 'run', `inference-main-${mainPort + REPLICA_PORT_STEP * k}.json`);

  beforeAll(async () => {
    await requireStack(base, 'chroma', 'temporal');
    db = await scratchDatabase('deployreplicas');
    world = await inferenceWorld(base, db, { movies: 200, users: 800 });
    // What a promotion leaves behind: main's version is the release's label, its spec a file.
    await db.pool.query(`INSERT INTO releases (id, model_spec, phase, decision, ended_at) VALUES ($1, $2, 'promoted', 'promoted', now())`, [release, world.specs.main]);
    mainPort = await freePortSpaced(REPLICA_PORT_STEP, 2);
    urls = [0, 1].map((k) => `http://127.0.0.1:${mainPort + REPLICA_PORT_STEP * k}`);
    const ports = { gateway: await freePort(), worker: await freePort() };
    workerUrl = `http://127.0.0.1:${ports.worker}`;
    env = {
      MARQUEE_RUNTIME: 'process',
      MARQUEE_HOME: home, // the runtime's run files and slot logs, not the shared .marquee
      MARQUEE_POSTGRES_URL: databaseUrl(base, db.name),
      MARQUEE_SERVICES_INFERENCEMAIN_PORT: String(mainPort),
      MARQUEE_SERVICES_GATEWAY_PORT: String(ports.gateway),
      MARQUEE_SERVICES_WORKER_PORT: String(ports.worker),
      MARQUEE_TEMPORAL_TASKQUEUE: `deploy-replicas-${tag}`,
    };
    // The gateway runs first, as under `marquee start`: deploy names the replicas through it.
    gateway = await startGateway(base, db.name, urls[0], env, ports.gateway);
    // The worker keeps the shared .marquee (its cached workflow bundle); it starts no slot here.
    const { MARQUEE_HOME: _home, ...workerEnv } = env;
    worker = spawnTs('worker', 'workers/main.ts', workerEnv);
    await waitForHttp(`${workerUrl}/healthz`, 120_000, (r) => r.status === 200, () => alive(worker)).catch((err) => {
      throw new Error(`${(err as Error).message}\n${worker.output.join('')}`);
    });
  }, 240_000);

  afterAll(async () => {
    await cli('undeploy', 'main').catch(() => undefined);
    await Promise.all([stop(gateway?.proc), stop(worker)]);
    await world?.cleanup();
    await db?.drop();
    rmSync(home, { recursive: true, force: true });
  }, 60_000);

  it('runs two replicas of main, names both in the routing state and in /sd/inference, and the gateway uses both', async () => {
    const r = await cli('deploy', 'main', '--replicas', '2');
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain(`main runs ${release}`);
    expect(r.out).toContain('gateway: main spread over 2 replicas');

    for (const u of urls) {
      const h = await request(`${u}/healthz`);
      expect(h.status, `${u}/healthz`).toBe(200);
      expect(JSON.parse(h.body).model.version, `${u}/healthz`).toBe(release);
    }

    expect(await routing()).toMatchObject({ mainUrl: urls[0], mainVersion: release, mainReplicas: [urls[1]] });
    expect(await routingRow()).toMatchObject({ main_url: urls[0], main_version: release, main_replicas: [urls[1]] });

    const sd = JSON.parse((await request(`${workerUrl}/sd/inference`)).body) as { targets: string[]; labels: Record<string, string> }[];
    const mainGroup = sd.find((g) => g.labels.slot === 'main');
    expect(mainGroup?.targets).toEqual(urls.map((u) => new URL(u).host));
    expect(mainGroup?.labels.version).toBe(release);

    const before = await Promise.all(urls.map(served));
    const users = Array.from({ length: 400 }, (_, i) => i * 13 + 5);
    let fromMain = 0;
    for (let i = 0; i < users.length; i += 16) {
      const replies = await Promise.all(users.slice(i, i + 16).map((u) => request(`${gateway.url}/recommend/${u}`)));
      for (const a of replies) {
        expect(a.status).toBe(200);
        if (a.headers['x-marquee-slot'] === 'main') fromMain++;
      }
    }
    const each = (await Promise.all(urls.map(served))).map((n, k) => n - before[k]);
    console.log(`deploy --replicas 2: ${fromMain} of ${users.length} answered by main; by replica ${each.join(' / ')}`);
    expect(fromMain).toBe(users.length);
    expect(each[0] + each[1]).toBeGreaterThanOrEqual(users.length);
    // Least-pending with ties in turn: each replica takes a real share.
    for (const n of each) expect(n).toBeGreaterThan(users.length * 0.2);
  }, 300_000);

  it('--replicas 1 unnames and stops the second and keeps the first; --replicas 2 brings it back', async () => {
    const [first, second] = [0, 1].map((k) => JSON.parse(readFileSync(runFile(k), 'utf8')).pid as number);
    const down = await cli('deploy', 'main', '--replicas', '1');
    expect(down.code, down.out).toBe(0);
    expect(down.out).toContain('removed replica 1');
    expect(alivePid(second)).toBe(false);
    expect(JSON.parse(readFileSync(runFile(0), 'utf8')).pid).toBe(first); // the same version is not restarted
    expect(await routing()).toMatchObject({ mainUrl: urls[0], mainReplicas: [] });
    const up = await cli('deploy', 'main', '--replicas', '2');
    expect(up.code, up.out).toBe(0);
    expect(await routing()).toMatchObject({ mainUrl: urls[0], mainVersion: release, mainReplicas: [urls[1]] });
  }, 300_000);

  it("keeps another machine's replica of the same version named through deploys here", async () => {
    // A replica of main on "another machine" (a URL outside this machine's slot ports), same release.
    const elsewhere = await world.startSlot('main', undefined, world.specs.main, { INFERENCE_VERSION: release });
    try {
      const named = await request(`${gateway.url}/admin/routing`, { method: 'PUT', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ mainReplicas: [urls[1], elsewhere.url] }) });
      expect(named.status, named.body).toBe(200);
      const down = await cli('deploy', 'main', '--replicas', '1');
      expect(down.code, down.out).toBe(0);
      expect(down.out).toContain('gateway: main spread over 1 replica here and 1 on another machine');
      expect(await routing()).toMatchObject({ mainVersion: release, mainReplicas: [elsewhere.url] });
      const up = await cli('deploy', 'main', '--replicas', '2');
      expect(up.code, up.out).toBe(0);
      expect(await routing()).toMatchObject({ mainVersion: release, mainReplicas: [urls[1], elsewhere.url] });
    } finally {
      // Back to this machine's replicas only (none, if the test failed with the second one stopped).
      const put = (mainReplicas: string[]) => request(`${gateway.url}/admin/routing`, { method: 'PUT', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ mainReplicas }) });
      if ((await put([urls[1]])).status !== 200) await put([]);
      await stop(elsewhere.proc);
    }
  }, 300_000);

  it('undeploy stops every replica and unnames them', async () => {
    const pids = [0, 1].map((k) => JSON.parse(readFileSync(runFile(k), 'utf8')).pid as number);
    expect(pids.every(alivePid)).toBe(true);

    const r = await cli('undeploy', 'main');
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain('main removed (2 replicas)');

    expect(pids.filter(alivePid)).toEqual([]);
    for (const k of [0, 1]) expect(existsSync(runFile(k))).toBe(false);
    for (const u of urls) expect((await request(`${u}/healthz`, { timeoutMs: 2000 })).status, `${u} still answers`).toBe(0);
    expect((await routing()).mainReplicas).toEqual([]);
    expect((await routingRow()).main_replicas).toEqual([]);
    const sd = JSON.parse((await request(`${workerUrl}/sd/inference`)).body) as { targets: string[]; labels: Record<string, string> }[];
    expect(sd.find((g) => g.labels.slot === 'main')?.targets).toEqual([new URL(urls[0]).host]);
  }, 120_000);

  it('undeploy while the gateway is down stops the replicas and unnames them in Postgres; a gateway started afterwards routes without them', async () => {
    const up = await cli('deploy', 'main', '--replicas', '2');
    expect(up.code, up.out).toBe(0);
    expect((await routingRow()).main_replicas).toEqual([urls[1]]);
    const pids = [0, 1].map((k) => JSON.parse(readFileSync(runFile(k), 'utf8')).pid as number);
    await stop(gateway.proc);
    const down = await cli('undeploy', 'main');
    expect(down.code, down.out).toBe(0);
    expect(down.out).toContain('main removed (2 replicas)');
    expect(down.out).toMatch(/no gateway answered \(.+\): 1 replica of main unnamed in the routing state in Postgres/);
    expect(pids.filter(alivePid)).toEqual([]);
    expect((await routingRow()).main_replicas).toEqual([]);
    const { rows: [change] } = await db.pool.query('SELECT changed_by, before, after FROM routing_changes ORDER BY id DESC LIMIT 1');
    expect(change).toMatchObject({ changed_by: 'marquee undeploy (gateway down)', before: { mainReplicas: [urls[1]] }, after: { mainReplicas: [] } });

    // A fresh port: the one just freed may have gone to another test file meanwhile. The routing
    // state lives in Postgres, so the new gateway starts from it.
    const port = await freePort();
    env.MARQUEE_SERVICES_GATEWAY_PORT = String(port);
    gateway = await startGateway(base, db.name, urls[0], env, port);
    expect((await routing()).mainReplicas).toEqual([]);
    const again = await cli('undeploy', 'main');
    expect(again.code, again.out).toBe(0);
    expect(again.out.trim()).toBe('nothing runs in main');
  }, 300_000);
});
