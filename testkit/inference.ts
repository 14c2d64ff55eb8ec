/**
 * What the gateway tests and bench run against: real inference processes
 * (services/inference/main.ts) on a given database seeded here with a small catalog and watch
 * history, reading vectors from a scratch ChromaDB collection; and the gateway in front of them.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createChromaClient } from '../lib/chroma.ts';
import { projectRoot, type Config } from '../lib/config.ts';
import { databaseUrl, type Pool } from '../lib/db.ts';
import { Rng } from '../lib/random.ts';
import { freePort, request, waitForHttp } from './net.ts';
import { alive, spawnTs, type Proc } from './processes.ts';

export interface GatewayProc { proc: Proc; port: number; url: string }

/** Spawns `entry` with the env `envFor(port)` and waits for its /healthz; a failed start throws with the process's output. */
async function startHttpProcess(name: string, entry: string, envFor: (port: number) => Record<string, string>, port?: number): Promise<GatewayProc> {
  const p = port ?? await freePort();
  const proc = spawnTs(name, entry, envFor(p));
  const url = `http://127.0.0.1:${p}`;
  await waitForHttp(`${url}/healthz`, 30_000, (r) => r.status === 200, () => alive(proc)).catch((err) => {
    throw new Error(`${(err as Error).message}\n${proc.output.join('')}`);
  });
  return { proc, port: p, url };
}

export async function startGateway(cfg: Config, dbName: string, mainUrl: string, env: Record<string, string> = {}, port?: number): Promise<GatewayProc> {
  return startHttpProcess('gateway', 'services/gateway/main.ts', (p) => ({
    MARQUEE_POSTGRES_URL: databaseUrl(cfg, dbName), GATEWAY_PORT: String(p), GATEWAY_MAIN_URL: mainUrl, ...env,
  }), port);
}

/** testkit/bare-proxy.ts in front of `upstreamUrl`: the floor of any gateway process (see there). */
export async function startBareProxy(upstreamUrl: string, env: Record<string, string> = {}): Promise<GatewayProc> {
  return startHttpProcess('bare-proxy', 'testkit/bare-proxy.ts', (p) => ({ BARE_PROXY_PORT: String(p), BARE_PROXY_UPSTREAM: upstreamUrl, ...env }));
}

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

  async function startSlot(slot: 'main' | 'nightly', port?: number, spec = specs[slot], env: Record<string, string> = {}): Promise<InferenceSlot> {
    const p = port ?? await freePort();
    const proc = spawnTs(`inference-${slot}`, 'services/inference/main.ts', {
      MARQUEE_POSTGRES_URL: databaseUrl(cfg, db.name), INFERENCE_PORT: String(p), INFERENCE_SLOT: slot, INFERENCE_MODEL: spec, ...env,
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

/** Requests a replica has answered, from its own /metrics. */
export async function served(url: string): Promise<number> {
  const r = await request(`${url}/metrics`);
  return r.body.split('\n').filter((l) => l.startsWith('inference_request_duration_seconds_count')).reduce((n, l) => n + Number(l.split(' ').pop()), 0);
}

export interface TempHome { dir: string; cleanup(): void }

/**
 * A MARQUEE_HOME of the test's own, set in this process's environment, so the slot runtime's run
 * files and slot logs go there and not into the shared .marquee. cleanup() puts the previous
 * MARQUEE_HOME back and removes the directory.
 */
export function tempHome(name: string): TempHome {
  const dir = mkdtempSync(path.join(os.tmpdir(), `marquee-${name}-`));
  const saved = process.env.MARQUEE_HOME;
  process.env.MARQUEE_HOME = dir;
  return {
    dir,
    cleanup() {
      if (saved === undefined) delete process.env.MARQUEE_HOME; else process.env.MARQUEE_HOME = saved;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
