/**
 * GET /recommend latency and throughput of the real inference service, beside a baseline
 * measured in the same run: an express handler on the same machine answering a constant list of
 * 20 ids (the floor any express service pays). Both run as separate processes, loaded by a
 * keep-alive HTTP client in this process, loopback only, bounded in time.
 *
 * It builds its own world so it runs on a fresh stack: a scratch database with generated movies,
 * users, watches and ratings, and a scratch ChromaDB collection of movie vectors (both removed at
 * the end). Requests mix warm users (with history) and cold ones (unknown ids).
 *
 * Usage: npm run bench:serve [-- --model models/affinity-v1.json --movies 27000 --users 20000 --seconds 10 --quick]
 *   --history-users N  histories the service keeps in memory (INFERENCE_HISTORY_USERS; 0: read Postgres per request)
 *   --profile DIR      write the service's CPU profile (node --cpu-prof) into DIR
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import express from 'express';
import { loadConfig, projectRoot } from '../lib/config.ts';
import { databaseUrl, type Pool } from '../lib/db.ts';
import { createChromaClient } from '../lib/chroma.ts';
import { Rng } from '../lib/random.ts';
import { benchArgs } from '../testkit/args.ts';
import { scratchDatabase } from '../testkit/db.ts';
import { freePort } from '../testkit/net.ts';

// Empty defaults: the real ones depend on --quick (see main).
const args = benchArgs('npm run bench:serve [-- --model models/affinity-v1.json --movies 27000 --users 20000 --seconds 10 --quick --history-users N --profile DIR]', {
  model: 'models/affinity-v1.json', movies: '', users: '', seconds: '', quick: false, 'baseline-server': '', profile: '', 'history-users': '',
});
/** A number option, or `def` when it was not given. */
const count = (name: string, def: number) => (args.string(name) === '' ? def : args.number(name, { min: 1, integer: true }));

// ---- load generation -----------------------------------------------------------------------

interface Stats { label: string; n: number; errors: number; fallbacks: number; p50: number; p99: number; max: number; rps: number }

function summarise(label: string, lat: number[], errors: number, fallbacks: number, seconds: number): Stats {
  const s = Float64Array.from(lat).sort();
  const q = (p: number) => (s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : NaN);
  return { label, n: s.length, errors, fallbacks, p50: q(0.5), p99: q(0.99), max: s.length ? s[s.length - 1] : NaN, rps: s.length / seconds };
}

function get(agent: http.Agent, port: number, pathname: string): Promise<{ ok: boolean; fallback: boolean }> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: pathname, agent }, (res) => {
      let len = 0;
      res.on('data', (c: Buffer) => { len += c.length; });
      res.on('end', () => resolve({ ok: res.statusCode === 200 && len > 0, fallback: String(res.headers['x-marquee-outcome'] ?? '').startsWith('fallback') }));
      res.on('error', () => resolve({ ok: false, fallback: false }));
    });
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve({ ok: false, fallback: false }));
  });
}

/** Open loop: a request every 1/rate s whatever the answers do; latency counts from the scheduled time. */
async function fixedRate(port: number, user: () => number, rate: number, seconds: number): Promise<Stats> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 128 });
  const lat: number[] = [];
  let errors = 0;
  let fallbacks = 0;
  const total = Math.round(rate * seconds);
  const t0 = performance.now();
  const pending: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const at = t0 + (i * 1000) / rate;
    const wait = at - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    // Latency counts from the scheduled time, or from the send when that is earlier (timers wake up to 1 ms early).
    const from = Math.min(at, performance.now());
    pending.push(get(agent, port, `/recommend/${user()}`).then((r) => {
      lat.push(performance.now() - from);
      if (!r.ok) errors++;
      if (r.fallback) fallbacks++;
    }));
  }
  await Promise.all(pending);
  agent.destroy();
  return summarise(`${rate} req/s`, lat, errors, fallbacks, seconds);
}

/** Closed loop: `concurrency` clients each sending the next request when the last answer arrives. */
async function saturate(port: number, user: () => number, concurrency: number, seconds: number): Promise<Stats> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const lat: number[] = [];
  let errors = 0;
  let fallbacks = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (performance.now() < end) {
      const s = performance.now();
      const r = await get(agent, port, `/recommend/${user()}`);
      lat.push(performance.now() - s);
      if (!r.ok) errors++;
      if (r.fallback) fallbacks++;
    }
  }));
  const elapsed = (performance.now() - t0) / 1000;
  agent.destroy();
  return summarise(`c=${concurrency}`, lat, errors, fallbacks, elapsed);
}

// ---- setup ---------------------------------------------------------------------------------

function rng(seed: number): () => number {
  const r = Rng.unhashed(seed);
  return () => r.next();
}

async function waitHttp(url: string, ok: (body: string) => boolean, timeoutMs: number, child: ChildProcess): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (child.exitCode !== null) throw new Error(`${url}: the process exited`);
    const body = await fetch(url, { signal: AbortSignal.timeout(2000) }).then((r) => (r.ok ? r.text() : null), () => null);
    if (body !== null && ok(body)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} not ready within ${timeoutMs} ms`);
}

interface World { users: number; dbName: string; pool: Pool; collection: string; cleanup: () => Promise<void> }

async function buildWorld(nMovies: number, nUsers: number): Promise<World> {
  const cfg = loadConfig();
  const tag = randomBytes(3).toString('hex');
  const db = await scratchDatabase('bench_serve', { cfg, max: 4 });
  const { name: dbName, pool } = db;
  const chroma = createChromaClient(cfg);
  const collection = `movies_bench_${tag}`;
  // A world half built (a ChromaDB error) leaves nothing behind.
  try {
    const r = rng(7);
    const dim = 32;
    const clusters = 24;
    // Clustered vectors (genre-like) so neighbour lists look like real ones.
    const centres = Array.from({ length: clusters }, () => Array.from({ length: dim }, () => r() - 0.5));
    const ids = Array.from({ length: nMovies }, (_, i) => `bench+movie+${i}+${1950 + (i % 75)}`);
    const pops = ids.map(() => Math.round(Math.exp(1.3 + 1.25 * (r() + r() + r() - 1.5) * 1.4) * 1000) / 1000);
    const vectors = ids.map((_, i) => {
      const c = centres[i % clusters];
      const v = c.map((x) => x + (r() - 0.5) * 0.8);
      const n = Math.hypot(...v);
      return v.map((x) => x / n);
    });
    await pool.query(`INSERT INTO movies (id, title, popularity, runtime, fetched_at)
      SELECT id, id, p, 90 + (length(id) % 40), now() FROM unnest($1::text[], $2::float8[]) AS t(id, p)`, [ids, pops]);

    // Watches drawn by popularity (as people find movies), 3–40 per user over the last 30 days.
    const cum: number[] = [];
    pops.reduce((acc, p, i) => (cum[i] = acc + p), 0);
    const draw = () => { const x = r() * cum[cum.length - 1]; let lo = 0, hi = cum.length - 1; while (lo < hi) { const m = (lo + hi) >> 1; if (cum[m] < x) lo = m + 1; else hi = m; } return lo; };
    let u: number[] = [], m: string[] = [], mins: number[] = [], hours: number[] = [];
    const flush = async () => {
      if (u.length === 0) return;
      await pool.query(`INSERT INTO watches (user_id, movie_id, first_at, last_at, minutes, max_minute)
        SELECT u, m, now() - make_interval(hours => h), now() - make_interval(hours => h) + make_interval(mins => mn), mn, mn
        FROM unnest($1::int[], $2::text[], $3::int[], $4::int[]) AS t(u, m, mn, h) ON CONFLICT DO NOTHING`, [u, m, mins, hours]);
      u = []; m = []; mins = []; hours = [];
    };
    for (let user = 0; user < nUsers; user++) {
      const n = 3 + Math.floor(r() * r() * 38);
      for (let k = 0; k < n; k++) { u.push(user); m.push(ids[draw()]); mins.push(5 + Math.floor(r() * 110)); hours.push(Math.floor(r() * 720)); }
      if (u.length > 20_000) await flush();
    }
    await flush();
    await pool.query(`INSERT INTO ratings (user_id, movie_id, rating, rated_at)
      SELECT user_id, movie_id, 1 + (abs(hashtext(movie_id || user_id)) % 5), last_at FROM watches WHERE (user_id + length(movie_id)) % 4 = 0`);
    await pool.query('ANALYZE');

    const col = await chroma.createCollection({ name: collection, embeddingFunction: null, configuration: { hnsw: { space: 'cosine' } } });
    for (let i = 0; i < ids.length; i += 2000) {
      // Vote metadata as content collections carry it (taste-profile reads it).
      const metadatas = pops.slice(i, i + 2000).map((p) => ({ popularity: p, vote_average: Math.round(Math.min(9.6, Math.max(1, 6.3 + 1.2 * (r() + r() + r() - 1.5) * 2)) * 10) / 10, vote_count: Math.round(p * (5 + 40 * r())) }));
      await col.add({ ids: ids.slice(i, i + 2000), embeddings: vectors.slice(i, i + 2000), metadatas });
    }
    return {
      users: nUsers, dbName, pool, collection,
      cleanup: async () => {
        await chroma.deleteCollection({ name: collection }).catch(() => undefined);
        await db.drop();
      },
    };
  } catch (err) {
    await chroma.deleteCollection({ name: collection }).catch(() => undefined);
    await db.drop();
    throw err;
  }
}

function spawnNode(args: string[], env: Record<string, string>, nodeArgs: string[] = []): ChildProcess {
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', ...args], { cwd: projectRoot, env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr!.on('data', (c: Buffer) => process.stderr.write(`[${path.basename(args[0])}] ${c}`));
  return child;
}

async function stopChild(c: ChildProcess | undefined): Promise<void> {
  if (!c || c.exitCode !== null || c.signalCode !== null) return;
  const done = new Promise((r) => c.once('exit', r));
  c.kill('SIGTERM');
  const t = setTimeout(() => c.kill('SIGKILL'), 5000);
  await done;
  clearTimeout(t);
}

// ---- the run -------------------------------------------------------------------------------

const fmt = (x: number) => (Number.isFinite(x) ? x.toFixed(2).padStart(8) : '       -');
const row = (who: string, s: Stats) =>
  `${who.padEnd(10)} ${s.label.padEnd(11)} ${String(s.n).padStart(7)} ${fmt(s.p50)} ${fmt(s.p99)} ${fmt(s.max)} ${s.rps.toFixed(0).padStart(8)} ${String(s.errors).padStart(6)} ${String(s.fallbacks).padStart(9)}`;

async function main(): Promise<void> {
  const quick = args.flag('quick');
  const model = args.string('model');
  const nMovies = count('movies', quick ? 5000 : 27000);
  const nUsers = count('users', quick ? 5000 : 20000);
  const seconds = count('seconds', quick ? 4 : 10);
  const satSeconds = quick ? 3 : 5;
  const levels = [1, 8, 32, 64];
  const rates = [200, 500];
  const warmShare = 0.8;

  const profileDir = args.string('profile') === '' ? '' : path.resolve(args.string('profile'));
  const cfg = loadConfig();
  const t0 = performance.now();
  console.log(`serve bench: ${model}, ${nMovies} movies, ${nUsers} users, ${Math.round(warmShare * 100)}% warm users; building the world…`);
  const world = await buildWorld(nMovies, nUsers);
  const { rows: [counts] } = await world.pool.query('SELECT (SELECT count(*) FROM watches)::int AS w, (SELECT count(*) FROM ratings)::int AS r');
  console.log(`  ${counts.w} watches, ${counts.r} ratings, collection ${world.collection} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);

  const dir = mkdtempSync(path.join(os.tmpdir(), 'marquee-bench-'));
  const spec = JSON.parse(readFileSync(path.resolve(projectRoot, model), 'utf8'));
  spec.collection = world.collection;
  const specFile = path.join(dir, 'spec.json');
  writeFileSync(specFile, JSON.stringify(spec));

  const r = rng(99);
  let cold = 1_000_000;
  const user = () => (r() < warmShare ? Math.floor(r() * world.users) : cold++);

  let service: ChildProcess | undefined;
  let baseline: ChildProcess | undefined;
  const results: { who: string; stats: Stats[] }[] = [];
  let history: { state: string; hits?: number; misses?: number } = { state: 'unknown' };
  try {
    const sPort = await freePort();
    service = spawnNode(['services/inference/main.ts'], { MARQUEE_POSTGRES_URL: databaseUrl(cfg, world.dbName), INFERENCE_PORT: String(sPort), INFERENCE_MODEL: specFile, INFERENCE_SLOT: 'nightly', ...(args.string('history-users') === '' ? {} : { INFERENCE_HISTORY_USERS: args.string('history-users') }) },
      profileDir === '' ? [] : ['--cpu-prof', '--cpu-prof-dir', profileDir]);
    const bPort = await freePort();
    baseline = spawnNode([fileURLToPath(import.meta.url), '--baseline-server', String(bPort)], {});
    await waitHttp(`http://127.0.0.1:${sPort}/healthz`, (b) => JSON.parse(b).degraded === false, 120_000, service);
    await waitHttp(`http://127.0.0.1:${bPort}/recommend/1`, () => true, 30_000, baseline);
    // Measure the steady state: wait for the neighbour lists the service computes after a load.
    let lists = 0;
    for (let i = 0; i < 600; i++) {
      const h = await fetch(`http://127.0.0.1:${sPort}/healthz`).then((x) => x.json()) as { vectors: { cachedNeighbourLists: number; neighbours: { state: string } } };
      lists = h.vectors.cachedNeighbourLists;
      if (h.vectors.neighbours.state !== 'computing' && h.vectors.neighbours.state !== 'idle') break;
      await new Promise((res) => setTimeout(res, 1000));
    }
    console.log(`  service ready in ${((performance.now() - t0) / 1000).toFixed(1)} s (neighbour lists cached: ${lists})`);

    // Arms interleaved level by level, so a neighbour's burst on the shared cores hits both alike.
    const arms = [['baseline', bPort], ['inference', sPort]] as const;
    const steps: ((port: number) => Promise<Stats>)[] = [
      ...rates.map((rate) => (port: number) => fixedRate(port, user, rate, seconds)),
      ...levels.map((c) => (port: number) => saturate(port, user, c, satSeconds)),
    ];
    for (const [, port] of arms) await saturate(port, user, 16, quick ? 1 : 3); // warm-up: JIT, connections
    for (const [who] of arms) results.push({ who, stats: [] });
    for (const step of steps) for (const [i, [, port]] of arms.entries()) results[i].stats.push(await step(port));
    history = (await fetch(`http://127.0.0.1:${sPort}/healthz`).then((x) => x.json()) as { history: typeof history }).history;
  } finally {
    await Promise.all([stopChild(service), stopChild(baseline)]);
    await world.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }

  console.log(`\n${'target'.padEnd(10)} ${'load'.padEnd(11)} ${'requests'.padStart(7)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'max ms'.padStart(8)} ${'req/s'.padStart(8)} ${'errors'.padStart(6)} ${'fallbacks'.padStart(9)}`);
  for (const { who, stats } of results) for (const s of stats) console.log(row(who, s));
  const [b, s] = results;
  const best = (x: Stats[]) => Math.max(...x.slice(rates.length).map((t) => t.rps));
  console.log('\nratio inference / baseline:');
  rates.forEach((rate, i) => console.log(`  at ${rate} req/s: p50 ${(s.stats[i].p50 / b.stats[i].p50).toFixed(2)}x, p99 ${(s.stats[i].p99 / b.stats[i].p99).toFixed(2)}x`));
  const ratio = best(s.stats) / best(b.stats);
  console.log(`  saturation:   ${best(s.stats).toFixed(0)} vs ${best(b.stats).toFixed(0)} req/s = ${ratio.toFixed(2)}x`);
  const served = (history.hits ?? 0) + (history.misses ?? 0);
  console.log(`histories: ${history.state}${served > 0 ? `, ${history.hits} from memory, ${history.misses} read from Postgres (${((100 * history.hits!) / served).toFixed(1)} % from memory: kept histories and users with none; a read is a warm user's first request)` : ''}`);
  const at500 = s.stats[rates.indexOf(500)];
  console.log(`goals: saturation ≥ 0.5x the baseline: ${ratio >= 0.5 ? 'met' : 'NOT met'} (${ratio.toFixed(2)}x); p99 < 10 ms at 500 req/s: ${at500.p99 < 10 ? 'met' : 'NOT met'} (${at500.p99.toFixed(2)} ms; baseline ${b.stats[rates.indexOf(500)].p99.toFixed(2)} ms)`);
  const errors = results.flatMap((x) => x.stats).reduce((a, t) => a + t.errors, 0);
  if (errors > 0) console.log(`WARNING: ${errors} requests failed`);
}

// ---- entry: the bench, or the baseline server (this file run with --baseline-server <port>) ----

if (args.string('baseline-server') !== '') {
  const ids = Array.from({ length: 20 }, (_, i) => `baseline+movie+${i}+2001`).join(',');
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.get('/recommend/:userid', (_req, res) => { res.type('text/plain').send(ids); });
  const server = app.listen(args.number('baseline-server', { min: 0, integer: true }), '127.0.0.1', () => console.log('baseline ready'));
  server.keepAliveTimeout = 65_000;
  process.on('SIGTERM', () => process.exit(0));
} else {
  await main();
}
