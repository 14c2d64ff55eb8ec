/**
 * The gateway tests' rig on top of testkit/: a scratch database with an inference world, main and
 * nightly slots and a gateway; and a contract stub (run this file as a script) for answers real
 * inference never gives: errors, garbage, chosen delays. `PUT /control {"delayMs","status","body"}`
 * changes its behaviour.
 */
import type { ChildProcess } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Config } from '../../lib/config.ts';
import { inferenceWorld, startGateway, type GatewayProc, type InferenceSlot } from '../../testkit/inference.ts';
import { freePort, request, waitForHttp } from '../../testkit/net.ts';
import { alive, spawnTs, stop, type Proc } from '../../testkit/processes.ts';
import { scratchDatabase } from './db.ts';
import { requireServer } from './servers.ts';

export interface GatewayRig {
  db: Awaited<ReturnType<typeof scratchDatabase>>;
  world: Awaited<ReturnType<typeof inferenceWorld>>;
  main: InferenceSlot;
  nightly: InferenceSlot;
  gw: GatewayProc;
  /** Stops the gateway, the two slots and any `extra` processes, then drops the world and the database. */
  teardown(...extra: (ChildProcess | undefined)[]): Promise<void>;
}

/** What the gateway tests share: a scratch database, an inference world, main and nightly slots, and a gateway in front of main. */
export async function gatewayRig(cfg: Config, name: string): Promise<GatewayRig> {
  await requireServer('postgres', Number(new URL(cfg.postgres.url).port || 5432));
  await requireServer('chroma', Number(new URL(cfg.chroma.url).port));
  const db = await scratchDatabase(name);
  db.pool.on('error', () => undefined);
  const world = await inferenceWorld(cfg, db);
  const [main, nightly] = await Promise.all([world.startSlot('main'), world.startSlot('nightly')]);
  const gw = await startGateway(cfg, db.name, main.url);
  return {
    db, world, main, nightly, gw,
    async teardown(...extra) {
      await Promise.all([stop(gw.proc), stop(main.proc), stop(nightly.proc), ...extra.map((p) => stop(p))]);
      await world.cleanup();
      await db.drop();
    },
  };
}

export interface StubProc { proc: Proc; port: number; url: string; version: string; control: (c: { delayMs?: number; status?: number; body?: string | null }) => Promise<void> }

export async function startStub(version: string, port?: number): Promise<StubProc> {
  const p = port ?? await freePort();
  const proc = spawnTs(`stub-${version}`, 'tests/support/upstream.ts', { STUB_PORT: String(p), STUB_VERSION: version });
  const url = `http://127.0.0.1:${p}`;
  await waitForHttp(`${url}/healthz`, 20_000, (r) => r.status === 200, () => alive(proc));
  return {
    proc, port: p, url, version,
    control: async (c) => {
      const r = await request(`${url}/control`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(c) });
      if (r.status !== 200) throw new Error(`stub control failed: ${r.status} ${r.body}`);
    },
  };
}

/** The stub's answer for a user: 20 ids that name the version, so a test can tell who answered. */
export const stubAnswer = (version: string, user: number): string => Array.from({ length: 20 }, (_, i) => `${version}+${(user * 31 + i * 7) % 997}`).join(',');

function runStub(port: number, version: string): void {
  let behaviour: { delayMs: number; status: number; body: string | null } = { delayMs: 0, status: 200, body: null };
  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    if (req.method === 'PUT' && u.pathname === '/control') {
      let text = '';
      req.on('data', (c: Buffer) => { text += c; });
      req.on('end', () => {
        behaviour = { ...behaviour, ...JSON.parse(text) };
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(behaviour));
      });
      return;
    }
    if (u.pathname === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'ok', service: 'stub', model: { version } }));
      return;
    }
    const m = /^\/recommend\/(\d+)$/.exec(u.pathname);
    if (!m) { res.writeHead(404).end('not found'); return; }
    const b = behaviour;
    setTimeout(() => {
      res.writeHead(b.status, { 'content-type': 'text/plain; charset=utf-8' }).end(b.body ?? stubAnswer(version, Number(m[1])));
    }, b.delayMs);
  });
  server.keepAliveTimeout = 65_000;
  server.listen(port, '127.0.0.1', () => console.log(`stub ${version} on ${port}`));
  process.on('SIGTERM', () => process.exit(0));
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  runStub(Number(process.env.STUB_PORT), process.env.STUB_VERSION ?? 'stub');
}
