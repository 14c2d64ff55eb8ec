/**
 * What the gateway tests and bench run against:
 *  - real inference processes (services/inference/main.ts) on a scratch database seeded with a
 *    small catalog and watch history, reading vectors from a scratch ChromaDB collection;
 *  - the gateway itself as a child process;
 *  - a contract stub (run this file as a script) for answers real inference never gives: errors,
 *    garbage, chosen delays. `PUT /control {"delayMs","status","body"}` changes its behaviour.
 * Plus a keep-alive HTTP client that measures latency.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createChromaClient } from '../../lib/chroma.ts';
import { projectRoot, type Config } from '../../lib/config.ts';
import { databaseUrl, type Pool } from '../../lib/db.ts';
import { Rng } from '../../lib/random.ts';
import { scratchDatabase } from './db.ts';
import { requireServer } from './servers.ts';

// ---- HTTP ------------------------------------------------------------------------------------

// Unbounded sockets: a load test must not queue requests in its own client and blame the server.
export const clientAgent = new http.Agent({ keepAlive: true });

export interface Reply { status: number; body: string; headers: http.IncomingHttpHeaders; ms: number; error?: string }

/** GET/PUT with a client-side timeout; network errors come back as status 0 with `error`, never thrown. */
export function request(url: string, opts: { method?: string; headers?: Record<string, string>; body?: string; timeoutMs?: number; agent?: http.Agent } = {}): Promise<Reply> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const req = http.request(url, { method: opts.method ?? 'GET', headers: opts.headers, agent: opts.agent ?? clientAgent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers, ms: performance.now() - t0 }));
      res.on('error', (err) => resolve({ status: 0, body: '', headers: {}, ms: performance.now() - t0, error: err.message }));
    });
    req.setTimeout(opts.timeoutMs ?? 10_000, () => req.destroy(new Error('client timeout')));
    req.on('error', (err) => resolve({ status: 0, body: '', headers: {}, ms: performance.now() - t0, error: err.message }));
    req.end(opts.body);
  });
}

export async function waitForHttp(url: string, timeoutMs = 30_000, ok: (r: Reply) => boolean = (r) => r.status === 200, alive?: () => boolean): Promise<Reply> {
  const deadline = Date.now() + timeoutMs;
  let last: Reply | undefined;
  while (Date.now() < deadline) {
    if (alive && !alive()) throw new Error(`the process behind ${url} exited`);
    last = await request(url, { timeoutMs: 2000 });
    if (ok(last)) return last;
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`${url} not ready within ${timeoutMs} ms (last: ${last?.status} ${last?.error ?? last?.body.slice(0, 200)})`);
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

// ---- child processes -------------------------------------------------------------------------

export type Proc = ChildProcess & { output: string[]; name: string };

/** Runs a TypeScript entry with tsx; GATEWAY_TEST_NODE_ARGS adds node flags (e.g. --cpu-prof) to the gateway only. */
export function spawnTs(name: string, entry: string, env: Record<string, string>): Proc {
  const extra = name === 'gateway' && process.env.GATEWAY_TEST_NODE_ARGS ? process.env.GATEWAY_TEST_NODE_ARGS.split(' ') : [];
  const child = spawn(process.execPath, [...extra, '--import', 'tsx', path.resolve(projectRoot, entry)], {
    cwd: projectRoot, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  }) as Proc;
  child.name = name;
  child.output = [];
  const keep = (c: Buffer) => { child.output.push(c.toString()); if (child.output.length > 2000) child.output.splice(0, 1000); };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  if (process.env.GATEWAY_TEST_VERBOSE) {
    child.stdout!.on('data', (c: Buffer) => process.stderr.write(`[${name}] ${c}`));
    child.stderr!.on('data', (c: Buffer) => process.stderr.write(`[${name}] ${c}`));
  }
  return child;
}

export const alive = (p: ChildProcess): boolean => p.exitCode === null && p.signalCode === null;

export async function stop(p: ChildProcess | undefined, signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 15_000): Promise<void> {
  if (!p || !alive(p)) return;
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  p.kill(signal);
  const timer = setTimeout(() => { if (alive(p)) p.kill('SIGKILL'); }, timeoutMs);
  await exited;
  clearTimeout(timer);
}

export interface GatewayProc { proc: Proc; port: number; url: string }

export async function startGateway(cfg: Config, dbName: string, mainUrl: string, env: Record<string, string> = {}, port?: number): Promise<GatewayProc> {
  const p = port ?? await freePort();
  const proc = spawnTs('gateway', 'services/gateway/main.ts', {
    MARQUEE_POSTGRES_URL: databaseUrl(cfg, dbName), GATEWAY_PORT: String(p), GATEWAY_MAIN_URL: mainUrl, ...env,
  });
  const url = `http://127.0.0.1:${p}`;
  await waitForHttp(`${url}/healthz`, 30_000, (r) => r.status === 200, () => alive(proc)).catch((err) => {
    throw new Error(`${(err as Error).message}\n${proc.output.join('')}`);
  });
  return { proc, port: p, url };
}

// ---- real inference --------------------------------------------------------------------------

export interface InferenceSlot { proc: Proc; port: number; url: string; version: string; slot: 'main' | 'nightly'; spec: string }

/**
 * A small world for real inference processes: `movies` movies with 16-d vectors in a scratch
 * Chroma collection, and watches/ratings for users 0..users-1 in the scratch database (so most
 * answers are ranked from history, the rest are cold starts). Two specs with fresh versions.
 */
export async function inferenceWorld(cfg: Config, db: { name: string; pool: Pool }, opts: { movies?: number; users?: number } = {}) {
  const nMovies = opts.movies ?? 300;
  const nUsers = opts.users ?? 3000;
  const tag = randomBytes(3).toString('hex');
  const rng = new Rng(12345);
  const rnd = () => rng.next();
  const ids = Array.from({ length: nMovies }, (_, i) => `gateway+test+movie+${i}+${1950 + (i % 70)}`);
  const pops = ids.map(() => Math.round(rnd() * 1000) / 10);
  await db.pool.query(
    `INSERT INTO movies (id, title, year, genres, popularity, runtime, fetched_at)
     SELECT id, id, 2000, ARRAY['Drama'], pop, 100, now() FROM unnest($1::text[], $2::float8[]) AS t(id, pop)`, [ids, pops]);
  const wu: number[] = []; const wm: string[] = []; const wmin: number[] = []; const wago: number[] = [];
  for (let u = 0; u < nUsers; u++) {
    const n = 2 + Math.floor(rnd() * 6);
    const seen = new Set<number>();
    for (let k = 0; k < n; k++) {
      const m = Math.floor(rnd() * nMovies);
      if (seen.has(m)) continue;
      seen.add(m);
      wu.push(u); wm.push(ids[m]); wmin.push(10 + Math.floor(rnd() * 90)); wago.push(Math.floor(rnd() * 72));
    }
  }
  await db.pool.query(
    `INSERT INTO watches (user_id, movie_id, first_at, last_at, minutes, max_minute)
     SELECT u, m, now() - make_interval(hours => h), now() - make_interval(hours => h), mins, mins
     FROM unnest($1::int[], $2::text[], $3::int[], $4::int[]) AS t(u, m, mins, h)`, [wu, wm, wmin, wago]);
  await db.pool.query(
    `INSERT INTO ratings (user_id, movie_id, rating, rated_at)
     SELECT user_id, movie_id, 1 + (abs(hashtext(movie_id || user_id)) % 5), last_at FROM watches WHERE user_id % 3 = 0`);

  const chroma = createChromaClient(cfg);
  const collection = `gateway-test-${tag}`;
  const col = await chroma.createCollection({ name: collection, embeddingFunction: null, configuration: { hnsw: { space: 'cosine' } } });
  await col.add({ ids, embeddings: ids.map(() => Array.from({ length: 16 }, () => rnd() - 0.5)), metadatas: pops.map((p) => ({ popularity: p })) });

  const specFiles: string[] = [];
  const writeSpec = (from: string, version: string): string => {
    const spec = JSON.parse(readFileSync(path.join(projectRoot, 'models', from), 'utf8'));
    spec.version = version;
    spec.collection = collection;
    const file = path.join(os.tmpdir(), `marquee-gateway-${version}.json`);
    writeFileSync(file, JSON.stringify(spec, null, 2));
    specFiles.push(file);
    return file;
  };
  const specs = { main: writeSpec('seed-baseline.json', `gw-main-${tag}`), nightly: writeSpec('affinity-v1.json', `gw-nightly-${tag}`) };

  async function startSlot(slot: 'main' | 'nightly', port?: number, spec = specs[slot]): Promise<InferenceSlot> {
    const p = port ?? await freePort();
    const proc = spawnTs(`inference-${slot}`, 'services/inference/main.ts', {
      MARQUEE_POSTGRES_URL: databaseUrl(cfg, db.name), INFERENCE_PORT: String(p), INFERENCE_SLOT: slot, INFERENCE_MODEL: spec,
    });
    const url = `http://127.0.0.1:${p}`;
    // Ready means serving from vectors and lists, not from the degraded start-up path.
    const h = await waitForHttp(`${url}/healthz`, 60_000, (r) => r.status === 200 && JSON.parse(r.body).degraded === false, () => alive(proc)).catch((err) => {
      throw new Error(`${(err as Error).message}\n${proc.output.join('')}`);
    });
    return { proc, port: p, url, version: JSON.parse(h.body).model.version, slot, spec };
  }

  return {
    specs, collection, users: nUsers, movieIds: ids, startSlot,
    async cleanup() {
      await chroma.deleteCollection({ name: collection }).catch(() => undefined);
      for (const f of specFiles) rmSync(f, { force: true });
    },
  };
}

// ---- contract stub ---------------------------------------------------------------------------

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

// ---- load --------------------------------------------------------------------------------------

/**
 * An open loop: request i goes out at start + i/rps whatever happened to earlier ones (a closed
 * loop would slow down with the server and hide its latency). Bounded by count and time.
 */
export async function openLoop(opts: { rps: number; seconds: number; url: (i: number) => string; onReply: (r: Reply, i: number) => void; timeoutMs?: number }): Promise<{ sent: number; elapsedMs: number }> {
  const t0 = Date.now();
  const tickMs = 10;
  const total = Math.floor(opts.rps * opts.seconds);
  const inflight = new Set<Promise<void>>();
  let sent = 0;
  for (let tick = 0; sent < total && Date.now() - t0 < opts.seconds * 1000 + 5000; tick++) {
    const due = Math.min(total, Math.floor(((tick + 1) * tickMs * opts.rps) / 1000));
    for (; sent < due; sent++) {
      const i = sent;
      const p = request(opts.url(i), { timeoutMs: opts.timeoutMs ?? 5000 }).then((r) => opts.onReply(r, i));
      inflight.add(p);
      void p.finally(() => inflight.delete(p));
    }
    const wait = t0 + (tick + 1) * tickMs - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  await Promise.all(inflight);
  return { sent, elapsedMs: Date.now() - t0 };
}

export function percentiles(values: number[]): { n: number; p50: number; p90: number; p99: number; max: number } {
  const s = [...values].sort((a, b) => a - b);
  const at = (p: number) => s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
  return { n: s.length, p50: at(50), p90: at(90), p99: at(99), max: s[s.length - 1] ?? NaN };
}
