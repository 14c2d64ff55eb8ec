/**
 * Replicas of a slot behind the gateway, with real processes: main runs as two replicas started by
 * the local-process slot runtime (lib/runtime/process.ts, the one MARQUEE_RUNTIME=process picks)
 * on a scratch database; two gateways share the routing state in Postgres. One replica is killed
 * (SIGKILL) while an open-loop load runs through a gateway: every request is answered, and none by
 * the fallback list because of the kill; the surviving replica answers instead.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, type Config } from '../lib/config.ts';
import { databaseUrl } from '../lib/db.ts';
import { slotFor } from '../lib/routing.ts';
import { processRuntime } from '../lib/runtime/process.ts';
import { REPLICA_PORT_STEP, type SlotRuntime } from '../lib/runtime/slots.ts';
import { inferenceWorld, served, startGateway, tempHome, type GatewayProc, type InferenceSlot, type TempHome } from '../testkit/inference.ts';
import { openLoop } from '../testkit/load.ts';
import { freePort, request, waitForHttp, type Reply } from '../testkit/net.ts';
import { stop } from '../testkit/processes.ts';
import { scratchDatabase } from './support/db.ts';
import { requireServer } from './support/servers.ts';

const base = loadConfig();
const auth = { authorization: `Bearer ${base.services.gateway.adminToken}`, 'content-type': 'application/json', 'x-marquee-actor': 'replicas-test' };

const portFree = (port: number) => new Promise<boolean>((resolve) => {
  const s = net.createServer();
  s.once('error', () => resolve(false));
  s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
});

/** A port for replica 0 whose replica-1 port (+100) is free as well. */
async function replicaBase(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const p = await freePort();
    if (p + REPLICA_PORT_STEP < 65536 && await portFree(p + REPLICA_PORT_STEP)) return p;
  }
  throw new Error('no free pair of ports for two replicas');
}

describe('replicas of a slot behind the gateway (real processes)', () => {
  let db: Awaited<ReturnType<typeof scratchDatabase>>;
  let world: Awaited<ReturnType<typeof inferenceWorld>>;
  let cfg: Config;
  let runtime: SlotRuntime;
  let urls: string[];
  let nightly: InferenceSlot;
  let gwA: GatewayProc;
  let gwB: GatewayProc;
  let home: TempHome;
  /** Waits until the gateway's routing (GET /admin/routing) satisfies `ok`: B polls Postgres once a second. */
  const routingOf = async (gw: GatewayProc, ok: (r: Record<string, unknown>) => boolean): Promise<void> => {
    const end = Date.now() + 10_000;
    let last = '';
    while (Date.now() < end) {
      const r = await request(`${gw.url}/admin/routing`, { headers: auth });
      last = r.body;
      if (r.status === 200 && ok(JSON.parse(r.body))) return;
      await new Promise((x) => setTimeout(x, 200));
    }
    throw new Error(`${gw.url} did not pick up the routing change within 10 s; it has ${last}`);
  };
  const put = (gw: GatewayProc, body: unknown) => request(`${gw.url}/admin/routing`, { method: 'PUT', headers: auth, body: JSON.stringify(body) });

  beforeAll(async () => {
    home = tempHome('replicas');
    await requireServer('chroma', Number(new URL(base.chroma.url).port));
    db = await scratchDatabase('replicas');
    db.pool.on('error', () => undefined);
    world = await inferenceWorld(base, db);
    const port = await replicaBase();
    cfg = { ...base, runtime: 'process', postgres: { ...base.postgres, url: databaseUrl(base, db.name) }, services: { ...base.services, inferenceMain: { port } } };
    runtime = processRuntime(cfg);
    const version = JSON.parse(readFileSync(world.specs.main, 'utf8')).version as string;
    const started = await Promise.all([0, 1].map((replica) => runtime.deploy({ slot: 'main', version, model: world.specs.main, image: null, replica })));
    urls = started.map((s) => s.url);
    await Promise.all(urls.map((u) => waitForHttp(`${u}/healthz`, 90_000, (r) => r.status === 200 && JSON.parse(r.body).degraded === false)));
    nightly = await world.startSlot('nightly');
    gwA = await startGateway(base, db.name, urls[0]);
    const r = await put(gwA, { mainReplicas: [urls[1]] });
    expect(r.status, r.body).toBe(200);
    gwB = await startGateway(base, db.name, urls[0]); // reads the same row: both replicas, from the start
  }, 240_000);

  afterAll(async () => {
    await Promise.all([stop(gwA?.proc), stop(gwB?.proc), stop(nightly?.proc)]);
    if (runtime) await Promise.all([runtime.remove('main', 0), runtime.remove('main', 1)]);
    await world?.cleanup();
    await db?.drop();
    home?.cleanup();
  }, 60_000);

  it('refuses replicas that do not answer or run another version, with a reason naming the field', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const r1 = await put(gwA, { mainReplicas: [urls[1], dead] });
    expect(r1.status).toBe(400);
    expect(r1.body).toMatch(/^mainReplicas: .*healthz/);
    const r2 = await put(gwA, { mainReplicas: [urls[1], nightly.url] });
    expect(r2.status).toBe(400);
    expect(r2.body).toMatch(/^mainReplicas: .* runs .*not main's version/);
    // A new version for main checks the replicas named again, even those named before: this one
    // runs the old version.
    const r4 = await put(gwA, { mainVersion: 'gw-main-next', mainReplicas: [urls[1]] });
    expect(r4.status).toBe(400);
    expect(r4.body).toMatch(/^mainReplicas: .* runs .*not main's version gw-main-next/);
    const r3 = await put(gwA, { mainReplicas: 'x' });
    expect(r3.status).toBe(400);
    expect(r3.body).toMatch(/^mainReplicas: must be a list/);
  });

  it('two gateways on one routing state send each user to the same slot, and spread main over both replicas', async () => {
    await routingOf(gwB, (x) => JSON.stringify(x.mainReplicas) === JSON.stringify([urls[1]]));
    const r = await put(gwA, { nightlyUrl: nightly.url, nightlyPercent: 30, releaseId: 'replicas-1' });
    expect(r.status, r.body).toBe(200);
    // B picks the change up from Postgres within its poll interval.
    await routingOf(gwB, (x) => x.nightlyPercent === 30);
    const before = await Promise.all(urls.map(served));
    const users = Array.from({ length: 400 }, (_, i) => i * 37 + 11);
    const ask = async (gw: GatewayProc, u: number): Promise<Reply> => request(`${gw.url}/recommend/${u}`);
    let mismatched = 0;
    for (let i = 0; i < users.length; i += 20) {
      const batch = users.slice(i, i + 20);
      const [a, b] = await Promise.all([Promise.all(batch.map((u) => ask(gwA, u))), Promise.all(batch.map((u) => ask(gwB, u)))]);
      batch.forEach((u, k) => {
        expect(a[k].status).toBe(200);
        expect(b[k].status).toBe(200);
        expect(a[k].headers['x-marquee-assigned'], `user ${u}`).toBe(slotFor(u, 'replicas-1', 30));
        if (a[k].headers['x-marquee-assigned'] !== b[k].headers['x-marquee-assigned']) mismatched++;
      });
    }
    expect(mismatched).toBe(0);
    const after = await Promise.all(urls.map(served));
    const each = after.map((n, i) => n - before[i]);
    const mainUsers = users.filter((u) => slotFor(u, 'replicas-1', 30) === 'main').length * 2;
    console.log(`main's ${mainUsers} answers (both gateways) by replica: ${each.join(' / ')}`);
    // Least-pending with ties in turn: each replica takes a real share of main's users.
    for (const n of each) expect(n).toBeGreaterThan(mainUsers * 0.2);
    expect(await put(gwA, { nightlyUrl: null, nightlyPercent: 0, releaseId: null })).toMatchObject({ status: 200 });
    await routingOf(gwB, (x) => x.nightlyUrl === null);
  }, 120_000);

  it('a replica killed (SIGKILL) under 200 req/s costs no answer: the other replica answers', async () => {
    const RPS = 200;
    const SECONDS = 12;
    const victim = await runtime.describe('main', 1);
    expect(victim?.running).toBe(true);
    const results: { status: number; ms: number; slot: string; fallback: string; at: number }[] = [];
    const t0 = Date.now();
    const load = openLoop({
      rps: RPS, seconds: SECONDS, url: (i) => `${gwA.url}/recommend/${(i * 7919) % 4000}`,
      onReply: (r) => results.push({ status: r.status, ms: r.ms, slot: String(r.headers['x-marquee-slot']), fallback: String(r.headers['x-marquee-fallback'] ?? ''), at: Date.now() - r.ms - t0 }),
    });
    let killedAt = 0;
    const kill = (async () => {
      await new Promise((r) => setTimeout(r, 4000));
      killedAt = Date.now() - t0;
      process.kill(Number(victim!.id), 'SIGKILL');
    })();
    const [{ sent }] = await Promise.all([load, kill]);
    const survivorAfter = await served(urls[0]);
    const by = (f: (r: typeof results[0]) => string) => results.reduce<Record<string, number>>((m, r) => { const k = f(r); m[k] = (m[k] ?? 0) + 1; return m; }, {});
    const health = JSON.parse((await request(`${gwA.url}/healthz`)).body);
    const metrics = (await request(`${gwA.url}/metrics`)).body;
    const retries = metrics.split('\n').filter((l) => l.startsWith('gateway_replica_retries_total')).reduce((n, l) => n + Number(l.split(' ').pop()), 0);
    console.log([
      `${results.length} of ${sent} answered; replica ${victim!.url} killed at ${(killedAt / 1000).toFixed(1)} s; load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`,
      `answered by: ${JSON.stringify(by((r) => r.slot))}; fallbacks: ${JSON.stringify(by((r) => r.fallback || 'none'))}; retries on the other replica: ${retries}`,
      `gateway sees main: ${JSON.stringify(health.slots.main.replicas.map((x: { url: string; up: boolean }) => `${x.url} ${x.up ? 'up' : 'down'}`))}`,
    ].join('\n'));

    expect(sent).toBe(RPS * SECONDS);
    expect(results.length).toBe(sent);
    expect(results.filter((r) => r.status !== 200)).toEqual([]);
    // A fallback caused by the kill would name an error, a refused/reset connection or a slot down.
    const byKill = results.filter((r) => /main_(error|down)/.test(r.fallback));
    expect(byKill.slice(0, 5)).toEqual([]);
    // After the kill main kept answering, from the survivor.
    expect(results.filter((r) => r.at > killedAt + 100 && r.slot === 'main').length).toBeGreaterThan(RPS * 4);
    expect(survivorAfter).toBeGreaterThan(0);
    expect(health.slots.main.replicas.find((x: { url: string }) => x.url === urls[1]).up).toBe(false);
    expect(health.slots.main.up).toBe(true);
  }, 120_000);
});
