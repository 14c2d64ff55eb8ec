/**
 * Replicas as Docker containers, on the stack's engine: `marquee deploy main --replicas 2` (the
 * package's bin, MARQUEE_RUNTIME=docker) builds marquee-inference:<version> and runs two
 * containers on the host network, one per port (marquee-inference-main-<port>, -<port+100>), in
 * front of a real gateway on a scratch database and ports of this file's own; both answer and are
 * named in the routing state. A promotion (the real promoteSlot activity, Docker runtime) replaces
 * both containers with the new version's image and removes nightly's; run again, it changes
 * nothing. `marquee undeploy main` removes both containers and unnames them. The specs are copies
 * under models/ (an image bakes in a spec from there), removed at the end, as are the images.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, projectRoot, type Config } from '../lib/config.ts';
import { databaseUrl } from '../lib/db.ts';
import { dockerClient, dockerDisabled, engineAvailable } from '../lib/docker.ts';
import { buildOrReuse, waitHealthy } from '../lib/runtime/deploy.ts';
import { dockerRuntime } from '../lib/runtime/docker.ts';
import { REPLICA_PORT_STEP, slotUrl } from '../lib/runtime/slots.ts';
import { scratchDatabase, type ScratchDatabase } from '../testkit/db.ts';
import { inferenceWorld, startGateway, type GatewayProc } from '../testkit/inference.ts';
import { freePort, freePortSpaced, request } from '../testkit/net.ts';
import { stop } from '../testkit/processes.ts';
import { realActivities } from './support/activities.ts';
import { runMarquee } from './support/cli.ts';
import { requireServer } from './support/servers.ts';

const base = loadConfig();
const tag = randomBytes(3).toString('hex');
const version = `test-docker-replicas-${tag}`;
const specRel = `models/${version}.json`;
const next = `${version}-next`;
const nextRel = `models/${next}.json`;
const auth = { authorization: `Bearer ${base.services.gateway.adminToken}` };

describe('replicas of main as Docker containers (marquee deploy / undeploy)', () => {
  const docker = dockerClient();
  let db: ScratchDatabase;
  let world: Awaited<ReturnType<typeof inferenceWorld>>;
  let gateway: GatewayProc;
  let env: Record<string, string>;
  let mainPort: number;
  let urls: string[];
  let cfg: Config;
  let nightlyPort: number;
  const names = () => [0, 1].map((k) => `marquee-inference-main-${mainPort + REPLICA_PORT_STEP * k}`);
  const nightlyName = () => `marquee-inference-nightly-${nightlyPort}`;
  let latestBefore: string | null | undefined;
  const inspect = (name: string) => docker.getContainer(name).inspect().catch((err: { statusCode?: number }) => {
    if (err.statusCode === 404) return undefined;
    throw err;
  });
  const cli = (...args: string[]) => runMarquee(args, { env, timeoutMs: 300_000 });
  const routing = async () => JSON.parse((await request(`${gateway.url}/admin/routing`, { headers: auth })).body) as { mainUrl: string; mainVersion: string; mainReplicas: string[] };

  beforeAll(async () => {
    if (dockerDisabled()) throw new Error('MARQUEE_DOCKER=off: this test needs the Docker engine');
    const engine = await engineAvailable();
    if (!engine.ok) throw new Error(`the Docker engine is not available (${engine.reason}); start it with npm run stack -- up docker`);
    await requireServer('chroma', Number(new URL(base.chroma.url).port));
    db = await scratchDatabase('dockerreplicas');
    world = await inferenceWorld(base, db, { movies: 200, users: 800 });
    writeFileSync(path.join(projectRoot, specRel), JSON.stringify({ ...JSON.parse(readFileSync(world.specs.main, 'utf8')), version }, null, 2));
    writeFileSync(path.join(projectRoot, nextRel), JSON.stringify({ ...JSON.parse(readFileSync(world.specs.nightly, 'utf8')), version: next }, null, 2));
    mainPort = await freePortSpaced(REPLICA_PORT_STEP, 2);
    urls = [0, 1].map((k) => `http://127.0.0.1:${mainPort + REPLICA_PORT_STEP * k}`);
    const gwPort = await freePort();
    env = {
      MARQUEE_RUNTIME: 'docker',
      MARQUEE_POSTGRES_URL: databaseUrl(base, db.name),
      MARQUEE_SERVICES_INFERENCEMAIN_PORT: String(mainPort),
      MARQUEE_SERVICES_GATEWAY_PORT: String(gwPort),
    };
    nightlyPort = await freePort();
    cfg = {
      ...base, runtime: 'docker', postgres: { ...base.postgres, url: databaseUrl(base, db.name) },
      services: { ...base.services, inferenceMain: { port: mainPort }, inferenceNightly: { port: nightlyPort }, gateway: { ...base.services.gateway, port: gwPort } },
    };
    gateway = await startGateway(base, db.name, urls[0], {}, gwPort);
  }, 240_000);

  afterAll(async () => {
    if (mainPort) for (const name of [...names(), nightlyName()]) await docker.getContainer(name).remove({ force: true }).catch(() => undefined);
    if (latestBefore !== undefined) {
      if (latestBefore) await docker.getImage(latestBefore).tag({ repo: 'marquee-inference', tag: 'latest' }).catch(() => undefined);
      else await docker.getImage('marquee-inference:latest').remove().catch(() => undefined);
    }
    for (const v of [version, next]) await docker.getImage(`marquee-inference:${v}`).remove({ force: true }).catch(() => undefined);
    for (const f of [specRel, nextRel]) rmSync(path.join(projectRoot, f), { force: true });
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

  it('a promotion replaces both containers with the new version and removes nightly; run again, it changes nothing', async () => {
    const runtime = dockerRuntime(cfg, docker);
    const image = await buildOrReuse(runtime, { version: next, model: nextRel });
    await runtime.deploy({ slot: 'nightly', version: next, model: nextRel, image: image.image });
    await waitHealthy(cfg, 'nightly', image.specHash, { timeoutMs: 120_000 });
    const admin = await request(`${gateway.url}/admin/routing`, { method: 'PUT', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ nightlyUrl: slotUrl(cfg, 'nightly'), nightlyVersion: next, nightlyPercent: 20, releaseId: next }) });
    expect(admin.status, admin.body).toBe(200);
    const oldIds = await Promise.all(names().map(async (n) => (await inspect(n))!.Id));
    // A promotion tags its image marquee-inference:latest; the engine is shared, so it is put back after.
    latestBefore = (await docker.getImage('marquee-inference:latest').inspect().catch(() => undefined))?.Id ?? null;
    const real = await realActivities(cfg, { runtime });
    const run = () => new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') })
      .run(real.activities.promoteSlot, { version: next, model: nextRel, image, releaseId: next, by: 'docker-replicas-test' });
    try {
      await run();
      const ids: string[] = [];
      for (const [k, name] of names().entries()) {
        const c = (await inspect(name))!;
        ids.push(c.Id);
        expect(c.Id, name).not.toBe(oldIds[k]);
        expect(c.State.Running, name).toBe(true);
        expect(c.Config.Image).toBe(`marquee-inference:${next}`);
        const h = JSON.parse((await request(`${urls[k]}/healthz`)).body);
        expect(h.model, urls[k]).toMatchObject({ version: next, hash: image.specHash });
      }
      for (const id of oldIds) expect(await inspect(id)).toBeUndefined();
      expect((await docker.getImage('marquee-inference:latest').inspect()).Id).toBe(image.imageId);
      expect(await inspect(nightlyName())).toBeUndefined();
      const routed = await routing();
      expect(routed).toMatchObject({ mainUrl: urls[0], mainVersion: next, mainReplicas: [urls[1]], nightlyUrl: null, nightlyPercent: 0 });

      await run();
      expect(await Promise.all(names().map(async (n) => (await inspect(n))?.Id))).toEqual(ids);
      expect(await routing()).toEqual(routed);
    } finally {
      await real.close();
    }
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
