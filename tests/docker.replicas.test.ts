/**
 * Replicas as Docker containers, on the stack's engine: `marquee deploy main --replicas 2` (the
 * package's bin, MARQUEE_RUNTIME=docker) builds marquee-inference:<version> and runs two
 * containers on the host network, one per port (marquee-inference-main-<port>, -<port+100>), in
 * front of a real gateway on a scratch database and ports of this file's own; both answer and are
 * named in the routing state; `marquee undeploy main` removes both containers and unnames them.
 * The spec is a copy under models/ (an image bakes in a spec from there), removed at the end, as
 * is the image.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, projectRoot } from '../lib/config.ts';
import { databaseUrl } from '../lib/db.ts';
import { dockerClient, dockerDisabled, engineAvailable } from '../lib/docker.ts';
import { REPLICA_PORT_STEP } from '../lib/runtime/slots.ts';
import { scratchDatabase, type ScratchDatabase } from '../testkit/db.ts';
import { inferenceWorld, startGateway, type GatewayProc } from '../testkit/inference.ts';
import { freePort, freePortSpaced, request } from '../testkit/net.ts';
import { stop } from '../testkit/processes.ts';
import { requireServer } from './support/servers.ts';

const exec = promisify(execFile);
const base = loadConfig();
const tag = randomBytes(3).toString('hex');
const version = `test-docker-replicas-${tag}`;
const specRel = `models/${version}.json`;
const auth = { authorization: `Bearer ${base.services.gateway.adminToken}` };

describe('replicas of main as Docker containers (marquee deploy / undeploy)', () => {
  const docker = dockerClient();
  let db: ScratchDatabase;
  let world: Awaited<ReturnType<typeof inferenceWorld>>;
  let gateway: GatewayProc;
  let env: Record<string, string>;
  let mainPort: number;
  let urls: string[];
  const names = () => [0, 1].map((k) => `marquee-inference-main-${mainPort + REPLICA_PORT_STEP * k}`);
  const inspect = (name: string) => docker.getContainer(name).inspect().catch((err: { statusCode?: number }) => {
    if (err.statusCode === 404) return undefined;
    throw err;
  });
  const cli = async (...args: string[]): Promise<{ code: number; out: string }> => {
    try {
      const r = await exec(process.execPath, [path.join(projectRoot, 'bin/marquee.js'), ...args], { cwd: projectRoot, env: { ...process.env, ...env }, timeout: 300_000 });
      return { code: 0, out: r.stdout + r.stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return { code: e.code ?? 1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
    }
  };
  const routing = async () => JSON.parse((await request(`${gateway.url}/admin/routing`, { headers: auth })).body) as { mainUrl: string; mainVersion: string; mainReplicas: string[] };

  beforeAll(async () => {
    if (dockerDisabled()) throw new Error('MARQUEE_DOCKER=off: this test needs the Docker engine');
    const engine = await engineAvailable();
    if (!engine.ok) throw new Error(`the Docker engine is not available (${engine.reason}); start it with npm run stack -- up docker`);
    await requireServer('chroma', Number(new URL(base.chroma.url).port));
    db = await scratchDatabase('dockerreplicas');
    world = await inferenceWorld(base, db, { movies: 200, users: 800 });
    writeFileSync(path.join(projectRoot, specRel), JSON.stringify({ ...JSON.parse(readFileSync(world.specs.main, 'utf8')), version }, null, 2));
    mainPort = await freePortSpaced(REPLICA_PORT_STEP, 2);
    urls = [0, 1].map((k) => `http://127.0.0.1:${mainPort + REPLICA_PORT_STEP * k}`);
    const gwPort = await freePort();
    env = {
      MARQUEE_RUNTIME: 'docker',
      MARQUEE_POSTGRES_URL: databaseUrl(base, db.name),
      MARQUEE_SERVICES_INFERENCEMAIN_PORT: String(mainPort),
      MARQUEE_SERVICES_GATEWAY_PORT: String(gwPort),
    };
    gateway = await startGateway(base, db.name, urls[0], {}, gwPort);
  }, 240_000);

  afterAll(async () => {
    if (mainPort) for (const name of names()) await docker.getContainer(name).remove({ force: true }).catch(() => undefined);
    await docker.getImage(`marquee-inference:${version}`).remove({ force: true }).catch(() => undefined);
    rmSync(path.join(projectRoot, specRel), { force: true });
    await stop(gateway?.proc);
    await world?.cleanup();
    await db?.drop();
  }, 120_000);

  it('deploy --replicas 2 runs two labelled containers that answer, named in the routing state', async () => {
    const r = await cli('deploy', 'main', '--model', specRel, '--replicas', '2');
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain(`as marquee-inference:${version}`);
    expect(r.out).toContain('gateway: main spread over 2 replicas');
    for (const [k, name] of names().entries()) {
      const c = await inspect(name);
      expect(c?.State.Running, name).toBe(true);
      expect(c?.Config.Image).toBe(`marquee-inference:${version}`);
      expect(c?.Config.Labels).toMatchObject({ 'marquee.slot': 'main', 'marquee.replica': String(k), 'marquee.version': version, 'marquee.port': String(mainPort + REPLICA_PORT_STEP * k) });
      expect(c?.HostConfig.NetworkMode).toBe('host');
      const h = await request(`${urls[k]}/healthz`);
      expect(h.status, `${urls[k]}/healthz`).toBe(200);
      expect(JSON.parse(h.body)).toMatchObject({ slot: 'main', image: `marquee-inference:${version}`, degraded: false, model: { version } });
    }
    expect(await routing()).toMatchObject({ mainUrl: urls[0], mainVersion: version, mainReplicas: [urls[1]] });
    let fromMain = 0;
    const replies = await Promise.all(Array.from({ length: 40 }, (_, i) => request(`${gateway.url}/recommend/${i * 11 + 1}`)));
    for (const a of replies) if (a.status === 200 && a.headers['x-marquee-slot'] === 'main') fromMain++;
    expect(fromMain).toBe(40);
  }, 400_000);

  it('undeploy removes both containers and unnames them', async () => {
    const r = await cli('undeploy', 'main');
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain('main removed (2 replicas)');
    for (const name of names()) expect(await inspect(name), name).toBeUndefined();
    for (const u of urls) expect((await request(`${u}/healthz`, { timeoutMs: 2000 })).status, `${u} still answers`).toBe(0);
    expect((await routing()).mainReplicas).toEqual([]);
  }, 120_000);
});
