/**
 * Promotion when main runs replicas, at activity level: the real promoteSlot (MockActivityEnvironment)
 * with the local-process slot runtime, a real gateway and real inference processes on a scratch
 * database, ports and MARQUEE_HOME of this file's own. Main runs two replicas of the old release,
 * nightly one of the new at 20 %. After promoteSlot:
 * - main still has two replicas, both on the new version (warm, its spec), named in the routing
 *   state with the new version; nightly is gone from routing and from the process table;
 * - no process of the old main is left running (the old replicas were replaced, not orphaned);
 * - the gateway spreads main's users over both new replicas.
 * Run again (Temporal retries an activity that timed out after its work was done), it changes
 * nothing: the same processes, the same routing.
 * Two more replicas of main stand for another machine's (any URL that is not this machine's slot
 * port scheme): one still on the old version is unnamed, with the reason in the activity's result;
 * one its machine moved to the new version ahead of the promotion stays named.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, type Config } from '../lib/config.ts';
import { databaseUrl } from '../lib/db.ts';
import { gatewayAdmin } from '../lib/gateway-client.ts';
import type { BuiltImage } from '../lib/release/types.ts';
import { buildOrReuse, removeReplicas, waitHealthy } from '../lib/runtime/deploy.ts';
import { processRuntime } from '../lib/runtime/process.ts';
import { REPLICA_PORT_STEP, slotUrl, type SlotRuntime } from '../lib/runtime/slots.ts';
import { scratchDatabase, type ScratchDatabase } from '../testkit/db.ts';
import { inferenceWorld, served, startGateway, tempHome, type GatewayProc, type InferenceSlot, type TempHome } from '../testkit/inference.ts';
import { freePort, freePortSpaced, request } from '../testkit/net.ts';
import { stop } from '../testkit/processes.ts';
import { realActivities } from './support/activities.ts';
import { requireServer } from './support/servers.ts';

const base = loadConfig();
const tag = randomBytes(3).toString('hex');
const oldVersion = `promote-old-${tag}`;
const newVersion = `promote-new-${tag}`;
const alivePid = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };
const quiet = () => new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') });

describe('promoteSlot with two replicas of main (process runtime)', () => {
  let db: ScratchDatabase;
  let world: Awaited<ReturnType<typeof inferenceWorld>>;
  let cfg: Config;
  let runtime: SlotRuntime;
  let gateway: GatewayProc;
  let real: Awaited<ReturnType<typeof realActivities>>;
  let image: BuiltImage;
  let mainUrls: string[];
  let oldPids: number[];
  let home: TempHome;
  /** Main's replicas on "another machine": one left on the old version, one moved to the new. */
  let elsewhereOld: InferenceSlot;
  let elsewhereNew: InferenceSlot;
  const pidOf = (slot: 'main' | 'nightly', k: number): number | undefined => {
    const file = path.join(home.dir, 'run', `inference-${slot}-${new URL(slotUrl(cfg, slot, k)).port}.json`);
    return existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')).pid : undefined;
  };
  const routing = () => gatewayAdmin(cfg).get('promote-test');

  beforeAll(async () => {
    home = tempHome('promote-replicas');
    await requireServer('chroma', Number(new URL(base.chroma.url).port));
    db = await scratchDatabase('promotereplicas');
    world = await inferenceWorld(base, db, { movies: 200, users: 800 });
    const mainPort = await freePortSpaced(REPLICA_PORT_STEP, 2);
    const gwPort = await freePort();
    cfg = {
      ...base, runtime: 'process', postgres: { ...base.postgres, url: databaseUrl(base, db.name) },
      services: { ...base.services, inferenceMain: { port: mainPort }, inferenceNightly: { port: await freePort() }, gateway: { ...base.services.gateway, port: gwPort } },
    };
    runtime = processRuntime(cfg);
    // The old main: two replicas of the old release, named; the new release baking in nightly.
    const oldImage = await buildOrReuse(runtime, { version: oldVersion, model: world.specs.main });
    for (const k of [0, 1]) {
      await runtime.deploy({ slot: 'main', version: oldVersion, model: world.specs.main, image: null, replica: k });
      await waitHealthy(cfg, 'main', oldImage.specHash, { replica: k, timeoutMs: 120_000 });
    }
    mainUrls = [0, 1].map((k) => slotUrl(cfg, 'main', k));
    oldPids = [0, 1].map((k) => pidOf('main', k)!);
    image = await buildOrReuse(runtime, { version: newVersion, model: world.specs.nightly });
    await runtime.deploy({ slot: 'nightly', version: newVersion, model: world.specs.nightly, image: null });
    await waitHealthy(cfg, 'nightly', image.specHash, { timeoutMs: 120_000 });
    gateway = await startGateway(base, db.name, mainUrls[0], {}, gwPort);
    const admin = gatewayAdmin(cfg);
    [elsewhereOld, elsewhereNew] = await Promise.all([0, 1].map(() => world.startSlot('main', undefined, world.specs.main, { INFERENCE_VERSION: oldVersion })));
    await admin.put({ mainVersion: oldVersion, mainReplicas: [mainUrls[1], elsewhereOld.url, elsewhereNew.url] }, 'promote-test');
    // The other machine replaces one of its replicas in place with the new release before the promotion.
    await stop(elsewhereNew.proc);
    elsewhereNew = await world.startSlot('main', elsewhereNew.port, world.specs.nightly, { INFERENCE_VERSION: newVersion });
    await admin.put({ nightlyUrl: slotUrl(cfg, 'nightly'), nightlyVersion: newVersion, nightlyPercent: 20, releaseId: newVersion }, 'promote-test');
    real = await realActivities(cfg, { runtime });
  }, 300_000);

  afterAll(async () => {
    await real?.close();
    await stop(gateway?.proc);
    await Promise.all([stop(elsewhereOld?.proc), stop(elsewhereNew?.proc)]);
    if (runtime) await Promise.all([removeReplicas(runtime, 'main'), removeReplicas(runtime, 'nightly')]);
    await world?.cleanup();
    await db?.drop();
    home?.cleanup();
  }, 60_000);

  it('replaces both replicas with the new version, routes them, and leaves nothing of the old main or nightly running', async () => {
    expect(await routing()).toMatchObject({ mainVersion: oldVersion, mainReplicas: [mainUrls[1], elsewhereOld.url, elsewhereNew.url], nightlyPercent: 20 });
    const nightlyPid = pidOf('nightly', 0)!;
    const beats: unknown[] = [];
    const env = quiet();
    env.on('heartbeat', (d: unknown) => beats.push(d));
    const result = await env.run(real.activities.promoteSlot, { version: newVersion, model: world.specs.nightly, image, releaseId: newVersion, by: 'promote-test' });
    expect(result).toEqual({ mainReplicas: [mainUrls[1], elsewhereNew.url], unnamed: [{ url: elsewhereOld.url, reason: `runs ${oldVersion}, not ${newVersion}` }] });

    expect(beats).toContainEqual({ step: 'replacing main', replica: 1, of: 2 });
    for (const u of mainUrls) {
      const h = JSON.parse((await request(`${u}/healthz`)).body);
      expect(h.model, u).toMatchObject({ version: newVersion, hash: image.specHash });
      expect(h.degraded, u).toBe(false);
    }
    expect(await routing()).toMatchObject({ mainUrl: mainUrls[0], mainVersion: newVersion, mainReplicas: [mainUrls[1], elsewhereNew.url], nightlyUrl: null, nightlyPercent: 0, releaseId: null });
    // The other machine's replicas were left running: they are its to replace or remove.
    expect(alivePid(elsewhereOld.proc.pid!)).toBe(true);
    expect(oldPids.filter(alivePid)).toEqual([]);
    expect(alivePid(nightlyPid)).toBe(false);
    expect(pidOf('nightly', 0)).toBeUndefined();
    expect((await request(`${slotUrl(cfg, 'nightly')}/healthz`, { timeoutMs: 2000 })).status).toBe(0);

    const named = [...mainUrls, elsewhereNew.url];
    const before = await Promise.all([...named, elsewhereOld.url].map(served));
    const users = Array.from({ length: 300 }, (_, i) => i * 17 + 3);
    for (let i = 0; i < users.length; i += 10) {
      const replies = await Promise.all(users.slice(i, i + 10).map((u) => request(`${gateway.url}/recommend/${u}`)));
      for (const r of replies) expect([r.status, r.headers['x-marquee-slot']]).toEqual([200, 'main']);
    }
    const each = (await Promise.all([...named, elsewhereOld.url].map(served))).map((n, k) => n - before[k]);
    console.log(`after the promotion main's ${users.length} answers by replica (here, here, elsewhere on the new version; elsewhere on the old): ${each.join(' / ')}`);
    for (const n of each.slice(0, 3)) expect(n).toBeGreaterThan(users.length * 0.15);
    expect(each[3]).toBe(0);
  }, 300_000);

  it('run again (a retried activity), it changes nothing', async () => {
    const pids = [0, 1].map((k) => pidOf('main', k));
    const was = await routing();
    await quiet().run(real.activities.promoteSlot, { version: newVersion, model: world.specs.nightly, image, releaseId: newVersion, by: 'promote-test' });
    expect([0, 1].map((k) => pidOf('main', k))).toEqual(pids);
    expect(pids.every((p) => p !== undefined && alivePid(p))).toBe(true);
    expect(pidOf('main', 2)).toBeUndefined();
    const now = await routing();
    expect(now).toMatchObject({ mainUrl: mainUrls[0], mainVersion: newVersion, mainReplicas: [mainUrls[1], elsewhereNew.url], nightlyUrl: null, nightlyPercent: 0 });
    expect(now.updatedAt).toBe(was.updatedAt);
  }, 120_000);
});
