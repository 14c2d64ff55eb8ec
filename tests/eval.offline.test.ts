/**
 * Offline evaluation end to end on a small fixture database: a taste-follows-genre history in a
 * scratch database, content vectors built by the vector job into a ChromaDB collection of the
 * test's own, and the two shipped specs pointed at that collection.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChromaClient } from '../lib/chroma.ts';
import { loadConfig } from '../lib/config.ts';
import type { Pool } from '../lib/db.ts';
import { chromaVectors, compareOffline, evaluateSpec, makeSplit } from '../lib/eval/offline.ts';
import { loadSpec } from '../lib/models/spec.ts';
import { offlineGateWith } from '../lib/eval/release.ts';
import { DEFAULT_EVAL_SETTINGS, type EvalSettings } from '../lib/eval/settings.ts';
import { hash32, Rng } from '../lib/random.ts';
import { buildVectors } from '../lib/vectors/build.ts';
import { scratchDatabase } from './support/db.ts';
import { requireServer } from './support/servers.ts';
import { databaseUrl } from '../lib/db.ts';
import { freePort, request, waitForHttp } from '../testkit/net.ts';
import { alive, spawnTs, stop } from '../testkit/processes.ts';

const cfg = loadConfig();
const tag = `evaltest${Math.random().toString(16).slice(2, 8)}`;
const collection = `movies_content_${tag}`;
const settings: EvalSettings = { ...DEFAULT_EVAL_SETTINGS, offline: { ...DEFAULT_EVAL_SETTINGS.offline, minUsers: 100, maxUsers: 600 } };
let db: Awaited<ReturnType<typeof scratchDatabase>>;
let empty: Awaited<ReturnType<typeof scratchDatabase>>;
let dir: string;
const spec = (name: string) => path.join(dir, `${name}.json`);

/**
 * A small world where taste follows genre: 400 movies in 8 genres with popularity independent of
 * genre; 600 users who mostly watch (and like) one genre, at random times over 30 days. What a
 * user watches next is then predicted by what they liked, not by popularity, which is the case
 * the similarity model is built for. (On the offline simulator's batches, where discovery is
 * drawn by popularity, a popularity list predicts the next watches better than either spec.)
 */
const FIX_GENRES = ['action', 'comedy', 'drama', 'horror', 'romance', 'science fiction', 'western', 'documentary'];
async function loadHistory(pool: Pool): Promise<void> {
  const rng = new Rng(hash32(42));
  const movies = Array.from({ length: 400 }, (_, i) => ({
    id: `movie+${i}`, genre: FIX_GENRES[i % 8], year: rng.int(1960, 2020), popularity: Math.exp(rng.float(0, Math.log(500))), vote: rng.float(4, 9),
  }));
  await pool.query(`INSERT INTO movies (id, title, year, genres, original_language, popularity, vote_average, vote_count, runtime, fetched_at)
    SELECT id, id, year, ARRAY[genre], 'en', pop, vote, 100, 100, now() FROM unnest($1::text[], $2::int[], $3::text[], $4::float8[], $5::float8[]) AS x(id, year, genre, pop, vote)`,
  [movies.map((m) => m.id), movies.map((m) => m.year), movies.map((m) => m.genre), movies.map((m) => m.popularity), movies.map((m) => m.vote)]);
  const t0 = Date.UTC(2025, 0, 1);
  const w: { u: number; m: string; at: number; min: number }[] = [];
  const r: { u: number; m: string; r: number; at: number }[] = [];
  for (let u = 0; u < 600; u++) {
    const fav = rng.int(0, 7);
    const seen = new Set<number>();
    for (let k = 0; k < 12; k++) {
      let i: number;
      do { i = rng.chance(0.85) ? fav + 8 * rng.int(0, 49) : rng.int(0, 399); } while (seen.has(i));
      seen.add(i);
      const at = t0 + Math.floor(rng.next() * 30 * 86_400_000);
      const liked = i % 8 === fav;
      w.push({ u, m: movies[i].id, at, min: liked ? rng.int(70, 100) : rng.int(5, 40) });
      if (rng.chance(0.5)) r.push({ u, m: movies[i].id, r: liked ? rng.int(4, 5) : rng.int(1, 2), at: at + 7_200_000 });
    }
  }
  await pool.query(`INSERT INTO watches (user_id, movie_id, first_at, last_at, minutes, max_minute)
    SELECT u, m, at, at + min * interval '1 minute', min, min FROM unnest($1::int[], $2::text[], $3::timestamptz[], $4::int[]) AS x(u, m, at, min)`,
  [w.map((x) => x.u), w.map((x) => x.m), w.map((x) => new Date(x.at)), w.map((x) => x.min)]);
  await pool.query(`INSERT INTO ratings (user_id, movie_id, rating, rated_at) SELECT * FROM unnest($1::int[], $2::text[], $3::int[], $4::timestamptz[])`,
    [r.map((x) => x.u), r.map((x) => x.m), r.map((x) => x.r), r.map((x) => new Date(x.at))]);
}
beforeAll(async () => {
  const url = new URL(cfg.chroma.url);
  await requireServer('chroma', Number(url.port), url.hostname);
  dir = mkdtempSync(path.join(os.tmpdir(), 'marquee-eval-'));
  for (const name of ['seed-baseline', 'affinity-v1', 'taste-v1', 'cowatch-v1']) {
    const s = JSON.parse(readFileSync(path.join('models', `${name}.json`), 'utf8'));
    writeFileSync(spec(name), JSON.stringify({ ...s, collection }));
  }
  db = await scratchDatabase('evaloffline');
  empty = await scratchDatabase('evalempty');
  await loadHistory(db.pool);
  const report = await buildVectors(cfg, db.pool, { kind: 'content', collection });
  expect(report.total).toBe(400);
}, 300_000);

afterAll(async () => {
  await db?.drop();
  await empty?.drop();
  await createChromaClient(cfg).deleteCollection({ name: collection }).catch(() => undefined);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('offline evaluation on a fixture database', () => {
  it('splits the history: the last 10% of watches are hidden, the sample is stable', async () => {
    const a = await makeSplit(db.pool, settings.offline);
    const b = await makeSplit(db.pool, settings.offline);
    expect(a.cutoff.toISOString()).toBe(b.cutoff.toISOString());
    expect(a.users.map((u) => u.userId)).toEqual(b.users.map((u) => u.userId));
    expect(a.users.length).toBeGreaterThan(100);
    const { rows: [c] } = await db.pool.query('SELECT count(*) FILTER (WHERE first_at >= $1)::float8 / count(*) AS share FROM watches', [a.cutoff]);
    expect(c.share).toBeGreaterThan(0.08);
    expect(c.share).toBeLessThan(0.12);
  });

  it('the better spec beats seed-baseline and passes the gate; swapped, the gate fails', async () => {
    const r = await offlineGateWith(db.pool, cfg, settings, spec('affinity-v1'), { against: spec('seed-baseline') });
    const run = r.run!;
    console.log(r.table);
    expect(run.candidate.users).toBe(run.main.users);
    expect(run.candidate.hitAt20!).toBeGreaterThan(run.main.hitAt20!);
    expect(run.candidate.ndcgAt20!).toBeGreaterThan(run.main.ndcgAt20!);
    expect(r.passed, r.reason).toBe(true);
    expect(r.table).toMatch(/hit@20/);
    expect(r.table).toMatch(/gate \(on warm users, at least 100 needed to decide on warm users\): PASSED/);
    // Warm and cold users apart: every sampled user is one or the other, and here most are warm.
    expect(run.candidate.warm.users + run.candidate.cold.users).toBe(run.candidate.users);
    expect(run.candidate.warm.users).toBeGreaterThanOrEqual(100);
    expect(r.numbers.gate_basis).toBe('warm');
    expect(r.numbers.warm_users).toBe(run.candidate.warm.users);
    expect(r.numbers.candidate_warm_hit_at_20).toBe(run.candidate.warm.hitAt20);
    expect(r.reason).toMatch(new RegExp(`over ${run.candidate.warm.users} warm users`));
    expect(r.table).toMatch(/^warm hit@20 /m);
    expect(r.table).toMatch(/^cold users /m);
    expect(r.numbers.candidate_version).toBe('affinity-v1');
    expect(run.candidate.coverage!).toBeGreaterThan(0);
    expect(run.candidate.popularityBias!).toBeGreaterThan(0);

    const swapped = await offlineGateWith(db.pool, cfg, settings, spec('seed-baseline'), { against: spec('affinity-v1') });
    expect(swapped.passed).toBe(false);
    expect(swapped.reason).toMatch(/hit@20 .* for seed-baseline vs .* for affinity-v1/);
    expect(swapped.numbers.candidate_hit_at_20).toBe(run.main.hitAt20);
  }, 300_000);

  it('decides on all users when too few are warm, and says so', async () => {
    const few: EvalSettings['offline'] = { ...settings.offline, minUsers: 100 };
    const split = await makeSplit(db.pool, few);
    const opts = { vectors: chromaVectors(cfg) };
    const { lists: _a, ...a } = await evaluateSpec(db.pool, split, loadSpec(spec('affinity-v1')), opts);
    const { lists: _b, ...b } = await evaluateSpec(db.pool, split, loadSpec(spec('seed-baseline')), opts);
    // The same scores with the warm users pretended fewer than the minimum.
    const thin = (x: typeof a) => ({ ...x, warm: { ...x.warm, users: 99 } });
    const c = compareOffline(split, thin(a), thin(b), few);
    expect(c.numbers.gate_basis).toBe('all');
    expect(c.reason).toMatch(/over \d+ all users \(fewer than 100 warm users: 99\)/);
    const rel = (a.hitAt20! - b.hitAt20!) / b.hitAt20!;
    expect(c.relativeDifference).toBeCloseTo(rel, 10);
    const w = compareOffline(split, a, b, few);
    expect(w.relativeDifference).toBeCloseTo((a.warm.hitAt20! - b.warm.hitAt20!) / b.warm.hitAt20!, 10);
  }, 300_000);

  it('an offline list is the list the inference service serves for asOf=cutoff', async () => {
    const split = await makeSplit(db.pool, settings.offline);
    const users = split.users.slice(0, 40);
    expect(users.length).toBe(40);
    // A few cold users too: history only after the cutoff (the sample holds users active after it).
    const { rows } = await db.pool.query<{ user_id: number }>('SELECT user_id FROM watches GROUP BY user_id HAVING min(first_at) >= $1 LIMIT 5', [split.cutoff]);
    const sample = { ...split, users: [...users, ...rows.map((r) => ({ userId: r.user_id, targets: new Set<string>() }))] };
    for (const name of ['affinity-v1', 'taste-v1', 'cowatch-v1']) {
      const offline = await evaluateSpec(db.pool, sample, loadSpec(spec(name)), { vectors: chromaVectors(cfg) });
      const port = await freePort();
      const proc = spawnTs(`inference-${name}`, 'services/inference/main.ts', {
        MARQUEE_POSTGRES_URL: databaseUrl(cfg, db.name), INFERENCE_PORT: String(port), INFERENCE_MODEL: spec(name), INFERENCE_SLOT: 'nightly',
      });
      try {
        const url = `http://127.0.0.1:${port}`;
        await waitForHttp(`${url}/healthz`, 120_000, (r) => r.status === 200 && JSON.parse(r.body).degraded === false && JSON.parse(r.body).vectors.neighbours.state !== 'computing', () => alive(proc))
          .catch((err) => { throw new Error(`${(err as Error).message}\n${proc.output.join('')}`); });
        let compared = 0;
        for (const u of sample.users) {
          const r = await request(`${url}/recommend/${u.userId}?asOf=${split.cutoff.toISOString()}`, { timeoutMs: 60_000 });
          expect(r.status, r.body).toBe(200);
          expect(r.headers['x-marquee-outcome'], `${name} user ${u.userId}`).not.toMatch(/^fallback/);
          expect(r.body.split(','), `${name} user ${u.userId}`).toEqual(offline.lists.get(u.userId));
          compared++;
        }
        expect(compared).toBe(sample.users.length);
      } finally {
        await stop(proc);
      }
    }
  }, 600_000);

  it('a spec against itself passes with a relative difference of zero', async () => {
    const r = await offlineGateWith(db.pool, cfg, settings, spec('seed-baseline'), { against: spec('seed-baseline') });
    expect(r.numbers.relative_difference).toBe(0);
    expect(r.passed).toBe(true);
  }, 300_000);

  it('an empty database fails the gate with "not enough users" instead of passing', async () => {
    const r = await offlineGateWith(empty.pool, cfg, settings, spec('affinity-v1'), { against: spec('seed-baseline') });
    expect(r.passed).toBe(false);
    expect(r.reason).toMatch(/^not enough users: 0 active after the cutoff/);
    expect(r.numbers.users).toBe(0);
  });

  it('a spec whose vector collection does not exist fails the gate, naming it', async () => {
    writeFileSync(spec('nowhere'), JSON.stringify({ ...JSON.parse(readFileSync(spec('affinity-v1'), 'utf8')), collection: `missing_${tag}` }));
    const r = await offlineGateWith(db.pool, cfg, settings, spec('nowhere'), { against: spec('seed-baseline') });
    expect(r.passed).toBe(false);
    expect(r.reason).toMatch(new RegExp(`missing_${tag}`));
  }, 120_000);
});
