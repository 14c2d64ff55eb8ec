/**
 * The inference service as a real process on a scratch database and a scratch ChromaDB
 * collection: known histories give known neighbours, the seed keeps watched movies and
 * affinity-v1 drops them, cold start, bad input, asOf, a stalled Postgres, and a ChromaDB of the
 * test's own stopped mid-test (the shared one is never touched).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ChromaClient } from 'chromadb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, projectRoot } from '../lib/config.ts';
import { databaseUrl } from '../lib/db.ts';
import { readHistories, readHistory, recentlyActiveUsers } from '../lib/models/history.ts';
import type { HistoryEntry } from '../lib/models/rank.ts';
import { chromaClientAt } from '../lib/chroma.ts';
import { chromaBinary } from '../stack/components/venv.ts';
import { scratchDatabase } from './support/db.ts';
import { requireServer } from './support/servers.ts';
import { freePort, request, waitForHttp } from '../testkit/net.ts';
import { alive, spawnTs, stop, type Proc } from '../testkit/processes.ts';

const cfg = loadConfig();
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const NOW = Date.now();
const ago = (ms: number) => new Date(NOW - ms);

// 8-d vectors with known cosines: three clusters (drama, comedy, horror) and popular "p" movies
// far from all of them. d1·d2 = 0.98, d1·d3 = 0.9, c1·c2 = 0.97, c1·c3 = 0.9; across clusters < 0.2.
const e = (i: number, w = 1) => Array.from({ length: 8 }, (_, d) => (d === i ? w : 0));
const add = (...vs: number[][]) => vs.reduce((a, b) => a.map((x, i) => x + b[i]));
const VECTORS: Record<string, number[]> = {
  d1: e(0), d2: add(e(0, 0.98), e(4, 0.199)), d3: add(e(0, 0.9), e(5, 0.436)),
  c1: e(1), c2: add(e(1, 0.97), e(4, 0.243)), c3: add(e(1, 0.9), e(6, 0.436)),
  h1: e(2), h2: add(e(2, 0.95), e(7, 0.312)),
  p1: e(3), p2: add(e(3, 0.9), e(5, 0.436)), p3: add(e(3, 0.9), e(6, 0.436)), p4: add(e(3, 0.9), e(7, 0.436)), p5: add(e(3, 0.9), e(4, 0.436)),
  // n1: a new movie, first seen two days ago (user 5), between the clusters.
  n1: add(e(3, 0.5), e(5, 0.5), e(6, 0.5), e(7, 0.5)),
};
const POPULARITY: Record<string, number> = { d1: 5, d2: 3, d3: 8, c1: 1, c2: 2, c3: 1.5, h1: 0.8, h2: 0.9, p1: 100, p2: 90, p3: 80, p4: 70, p5: 60, n1: 0.5 };
const BY_POPULARITY = Object.keys(POPULARITY).sort((a, b) => POPULARITY[b] - POPULARITY[a]);
// Vote metadata (as content collections carry it): d3 is acclaimed, d2 panned; the rest have none.
const VOTES: Record<string, { vote_average: number; vote_count: number }> = { d2: { vote_average: 5, vote_count: 100 }, d3: { vote_average: 8.5, vote_count: 100 } };

interface Watch { user: number; movie: string; at: Date; minutes: number }
interface Rating { user: number; movie: string; rating: number; at: Date }
const WATCHES: Watch[] = [
  // user 1: loved d1.
  { user: 1, movie: 'd1', at: ago(3 * DAY), minutes: 100 },
  // user 2: d1 (rated 4) and most of d2.
  { user: 2, movie: 'd1', at: ago(3 * DAY), minutes: 100 }, { user: 2, movie: 'd2', at: ago(2 * DAY), minutes: 90 },
  // user 3: d1 ten days ago, then c1 five days ago (both rated 5).
  { user: 3, movie: 'd1', at: ago(10 * DAY), minutes: 100 }, { user: 3, movie: 'c1', at: ago(5 * DAY), minutes: 100 },
  // user 4: gave up on d1 after 10 minutes, but rated it 5 two days ago.
  { user: 4, movie: 'd1', at: ago(10 * DAY), minutes: 10 },
  // The last hours' trend: c1 by three users, h1 by two (what affinity-v1's cold start follows).
  { user: 10, movie: 'c1', at: ago(1 * HOUR), minutes: 30 }, { user: 11, movie: 'c1', at: ago(2 * HOUR), minutes: 30 },
  { user: 12, movie: 'c1', at: ago(3 * HOUR), minutes: 30 }, { user: 10, movie: 'h1', at: ago(1 * HOUR), minutes: 30 },
  { user: 11, movie: 'h1', at: ago(2 * HOUR), minutes: 30 },
  // user 5 found the new n1 two days ago, after d1.
  { user: 5, movie: 'd1', at: ago(2 * DAY), minutes: 100 }, { user: 5, movie: 'n1', at: ago(2 * DAY - HOUR), minutes: 100 },
  // Every other movie was around long before: one watch each 25 days ago (users 100…).
  ...Object.keys(VECTORS).filter((m) => m !== 'n1').map((movie, i) => ({ user: 100 + i, movie, at: ago(25 * DAY), minutes: 20 })),
];
const RATINGS: Rating[] = [
  { user: 1, movie: 'd1', rating: 5, at: ago(3 * DAY - HOUR) },
  { user: 2, movie: 'd1', rating: 4, at: ago(3 * DAY - HOUR) },
  { user: 3, movie: 'd1', rating: 5, at: ago(10 * DAY - HOUR) }, { user: 3, movie: 'c1', rating: 5, at: ago(5 * DAY - HOUR) },
  { user: 4, movie: 'd1', rating: 5, at: ago(2 * DAY) },
];

async function createCollection(client: ChromaClient, name: string): Promise<void> {
  const col = await client.createCollection({ name, embeddingFunction: null, configuration: { hnsw: { space: 'cosine' } } });
  const ids = Object.keys(VECTORS);
  const unit = (v: number[]) => { const n = Math.hypot(...v); return v.map((x) => x / n); };
  await col.add({ ids, embeddings: ids.map((id) => unit(VECTORS[id])), metadatas: ids.map((id) => ({ popularity: POPULARITY[id], ...VOTES[id] })) });
}

/** A copy of a shipped spec reading the test's collection, with some params overridden. */
function writeSpec(dir: string, from: string, collection: string, version: string, params: Record<string, unknown> = {}): string {
  const spec = JSON.parse(readFileSync(path.join(projectRoot, 'models', from), 'utf8'));
  Object.assign(spec, { version, collection });
  Object.assign(spec.params, params);
  const file = path.join(dir, `${version}.json`);
  writeFileSync(file, JSON.stringify(spec));
  return file;
}

interface Service { proc: Proc; url: string }

async function startService(dbName: string, spec: string, env: Record<string, string> = {}, ready = true): Promise<Service> {
  const port = await freePort();
  const proc = spawnTs('inference', 'services/inference/main.ts', {
    MARQUEE_POSTGRES_URL: databaseUrl(cfg, dbName), INFERENCE_PORT: String(port), INFERENCE_MODEL: spec, INFERENCE_SLOT: 'nightly',
    INFERENCE_IMAGE: 'marquee-inference:test', MARQUEE_GIT_COMMIT: 'abc123test', ...env,
  });
  const url = `http://127.0.0.1:${port}`;
  await waitForHttp(`${url}/healthz`, 60_000, (r) => r.status === 200 && (!ready || JSON.parse(r.body).degraded === false), () => alive(proc))
    .catch((err) => { throw new Error(`${(err as Error).message}\n${proc.output.join('')}`); });
  return { proc, url };
}

const ids = async (url: string): Promise<string[]> => {
  const r = await request(url);
  expect(r.status, r.body).toBe(200);
  expect(r.headers['content-type']).toMatch(/^text\/plain/);
  return r.body === '' ? [] : r.body.split(',');
};

describe('inference service on real Postgres and ChromaDB', () => {
  let db: Awaited<ReturnType<typeof scratchDatabase>>;
  const chroma = chromaClientAt(cfg.chroma.url);
  const collection = `movies_test_${process.pid}_${Date.now().toString(36)}`;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'marquee-inference-'));
  let seed: Service;
  let affinity: Service;
  let taste: Service;
  let cowatch: Service;
  let seedSpec: string;

  beforeAll(async () => {
    const chromaUrl = new URL(cfg.chroma.url);
    await requireServer('chroma', Number(chromaUrl.port), chromaUrl.hostname);
    db = await scratchDatabase('inference');
    await db.pool.query(
      `INSERT INTO movies (id, title, popularity, runtime, fetched_at) SELECT id, id, p, 100, now() FROM unnest($1::text[], $2::float8[]) AS t(id, p)`,
      [Object.keys(POPULARITY), Object.values(POPULARITY)]);
    for (const w of WATCHES) {
      await db.pool.query('INSERT INTO watches (user_id, movie_id, first_at, last_at, minutes, max_minute) VALUES ($1, $2, $3, $3::timestamptz + interval \'1 hour\', $4, $4)', [w.user, w.movie, w.at, w.minutes]);
    }
    for (const r of RATINGS) await db.pool.query('INSERT INTO ratings (user_id, movie_id, rating, rated_at) VALUES ($1, $2, $3, $4)', [r.user, r.movie, r.rating, r.at]);
    await createCollection(chroma, collection);
    // Two neighbours per movie keep the seed's candidate sets small enough to write down.
    seedSpec = writeSpec(dir, 'seed-baseline.json', collection, 'seed-test', { neighboursPerMovie: 2 });
    [seed, affinity, taste, cowatch] = await Promise.all([
      startService(db.name, seedSpec),
      startService(db.name, writeSpec(dir, 'affinity-v1.json', collection, 'affinity-test')),
      startService(db.name, writeSpec(dir, 'taste-v1.json', collection, 'taste-test')),
      startService(db.name, writeSpec(dir, 'cowatch-v1.json', collection, 'cowatch-test')),
    ]);
  });

  afterAll(async () => {
    await Promise.all([stop(seed?.proc), stop(affinity?.proc), stop(taste?.proc), stop(cowatch?.proc)]);
    await chroma.deleteCollection({ name: collection }).catch(() => undefined);
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reports the model, its hash, slot, image and commit in /healthz', async () => {
    const h = JSON.parse((await request(`${seed.url}/healthz`)).body);
    expect(h).toMatchObject({
      status: 'ok', slot: 'nightly', image: 'marquee-inference:test', commit: 'abc123test', degraded: false,
      model: { version: 'seed-test', rule: 'seed-popularity-rating', collection, path: seedSpec },
      vectors: { state: 'ready', count: 14, dim: 8 },
    });
    expect(h.model.hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('known history gives the expected neighbours', async () => {
    // seed: d1's two neighbours, ordered by popularity (d3 8 > d2 3), then the popular list.
    const s = await ids(`${seed.url}/recommend/1`);
    expect(s.slice(0, 2)).toEqual(['d3', 'd2']);
    expect(s.slice(2, 7)).toEqual(['p1', 'p2', 'p3', 'p4', 'p5']);
    // affinity: by similarity to the liked d1 (d2 0.98 before d3 0.9), nothing dissimilar.
    const a = await ids(`${affinity.url}/recommend/1`);
    expect(a.slice(0, 2)).toEqual(['d2', 'd3']);
    expect(a.length).toBeLessThanOrEqual(20);
    expect(new Set(a).size).toBe(a.length);
  });

  it('taste-v1 reads the vote metadata from ChromaDB: the acclaimed d3 passes the closer but panned d2', async () => {
    const t = await ids(`${taste.url}/recommend/1`);
    expect(t[0]).toBe('d3');
    expect(t).not.toContain('d1');
    expect(t.indexOf('d2')).toBeGreaterThan(t.indexOf('d3'));
    const h = JSON.parse((await request(`${taste.url}/healthz`)).body);
    expect(h.model).toMatchObject({ rule: 'taste-profile', version: 'taste-test' });
    expect(h.vectors.neighbours.state).toBe('ready');
    expect(await ids(`${taste.url}/recommend/424242`)).toEqual(await ids(`${affinity.url}/recommend/424242`));
  });

  it('keeps watched movies in seed-baseline and drops them in affinity-v1', async () => {
    const s = await ids(`${seed.url}/recommend/2`);
    expect(s.slice(0, 3)).toEqual(['d3', 'd2', 'd1']);
    const a = await ids(`${affinity.url}/recommend/2`);
    expect(a[0]).toBe('d3');
    expect(a).not.toContain('d1');
    expect(a).not.toContain('d2');
  });

  it('gives unknown users the cold-start list: fixed popular for the seed, recent watches for affinity-v1', async () => {
    expect(await ids(`${seed.url}/recommend/424242`)).toEqual(BY_POPULARITY);
    expect(await ids(`${seed.url}/recommend/0`)).toEqual(BY_POPULARITY);
    const a = await ids(`${affinity.url}/recommend/424242`);
    expect(a.slice(0, 2)).toEqual(['c1', 'h1']);
    expect(a.slice(2)).toEqual(BY_POPULARITY.filter((id) => id !== 'c1' && id !== 'h1'));
  });

  it('answers 400 with a one-line reason for ids that are not non-negative integers', async () => {
    for (const bad of ['-1', 'abc', '1.5', '99999999999', '1e3', '%20', '0x10']) {
      const r = await request(`${seed.url}/recommend/${bad}`);
      expect(r.status, bad).toBe(400);
      expect(r.body).toMatch(/^user id must be/);
      expect(r.body).not.toContain('\n');
    }
    for (const bad of ['yesterday', '2025-02-30T00:00:00', '2025-13-01', '']) {
      const r = await request(`${affinity.url}/recommend/1?asOf=${encodeURIComponent(bad)}`);
      expect(r.status, bad).toBe(400);
      expect(r.body).toMatch(/^asOf must be/);
    }
    expect((await request(`${affinity.url}/recommend/1?asOf=a&asOf=b`)).status).toBe(400);
  });

  it('asOf hides later watches and ratings', async () => {
    // Now user 3's latest love is c1: its neighbours lead.
    expect((await ids(`${affinity.url}/recommend/3`)).slice(0, 2)).toEqual(['c2', 'c3']);
    // Seven days ago only d1 was known.
    const asOf = ago(7 * DAY).toISOString();
    const before = await ids(`${affinity.url}/recommend/3?asOf=${asOf}`);
    expect(before.slice(0, 2)).toEqual(['d2', 'd3']);
    expect(before.indexOf('c2')).toBeGreaterThan(2);
    // Zone-less times are UTC, as in the event log.
    expect(await ids(`${affinity.url}/recommend/3?asOf=${asOf.slice(0, -1)}`)).toEqual(before);
    // Then: d1 had 3 viewers (users 3, 4 and its old one), every other old movie 1: the padding is by that, ties by id.
    expect(before).toEqual(['d2', 'd3', 'c1', 'c2', 'c3', 'h1', 'h2', 'p1', 'p2', 'p3', 'p4', 'p5']);
    // Before anything: no movie existed yet, so there is nothing to recommend.
    const long = ago(30 * DAY).toISOString();
    expect(await ids(`${affinity.url}/recommend/3?asOf=${long}`)).toEqual([]);
    expect(await ids(`${affinity.url}/recommend/999999?asOf=${long}`)).toEqual([]);
    // User 4 abandoned d1 early (dislike) and rated it 5 later: the rating is hidden before then,
    // so d1's neighbours count against and the list is the cold-start list of then, minus d1.
    expect((await ids(`${affinity.url}/recommend/4`)).slice(0, 2)).toEqual(['d2', 'd3']);
    const fiveDays = ago(5 * DAY).toISOString();
    const hidden = await ids(`${affinity.url}/recommend/4?asOf=${fiveDays}`);
    expect(hidden).toEqual(['c1', 'c2', 'c3', 'd2', 'd3', 'h1', 'h2', 'p1', 'p2', 'p3', 'p4', 'p5']);
    expect(hidden).toEqual((await ids(`${affinity.url}/recommend/999999?asOf=${fiveDays}`)).filter((id) => id !== 'd1'));
  });

  it('never recommends for asOf=T a movie first seen at or after T', async () => {
    // n1 was first seen two days ago: now it is in the seed's padding and in cowatch's list for user 1.
    expect(await ids(`${seed.url}/recommend/1`)).toContain('n1');
    expect(await ids(`${taste.url}/recommend/1`)).toContain('n1');
    expect((await ids(`${cowatch.url}/recommend/1`)).slice(0, 4)).toEqual(['c1', 'n1', 'd2', 'h1']);
    const then = ago(2.5 * DAY).toISOString();
    for (const svc of [seed, affinity, taste, cowatch]) {
      for (const user of [1, 2, 3, 4, 5, 999999]) {
        const list = await ids(`${svc.url}/recommend/${user}?asOf=${then}`);
        expect(list, `user ${user}`).not.toContain('n1');
        expect(list.length).toBeGreaterThan(0);
      }
    }
    // Exactly at the first watch's time it still did not exist; a millisecond later it did.
    const first = ago(2 * DAY - HOUR).getTime();
    expect(await ids(`${seed.url}/recommend/999999?asOf=${new Date(first).toISOString()}`)).not.toContain('n1');
    expect(await ids(`${seed.url}/recommend/999999?asOf=${new Date(first + 1).toISOString()}`)).toContain('n1');
  });

  it('builds the lists for asOf=T from the watches before T only', async () => {
    // 2.5 h ago: d1 had 6 viewers, c1 3, d2 2, every other movie 1 (c1's and h1's last two hours not yet).
    const t = ago(2.5 * HOUR).toISOString();
    const popularThen = ['d1', 'c1', 'd2', 'c2', 'c3', 'd3', 'h1', 'h2', 'n1', 'p1', 'p2', 'p3', 'p4', 'p5'];
    expect(await ids(`${seed.url}/recommend/999999?asOf=${t}`)).toEqual(popularThen);
    // affinity's cold start: the last 24 h's starts before T (c1 once, by user 12), then that popularity.
    expect(await ids(`${affinity.url}/recommend/999999?asOf=${t}`)).toEqual(['c1', ...popularThen.filter((id) => id !== 'c1')]);
    // Now the same lists follow the catalog and the last hours.
    expect(await ids(`${seed.url}/recommend/999999`)).toEqual(BY_POPULARITY);
    expect((await ids(`${affinity.url}/recommend/999999`)).slice(0, 2)).toEqual(['c1', 'h1']);
    // cowatch 2.5 days ago: d1 and c1 co-watched by user 3 only; in the 21 days before, c1 started
    // once (2 viewers before T), d1 four times (5): c1 = 1 + 3 × (1 / 2^0.3) / (4 / 5^0.3), then
    // the cold-start padding of then.
    const before = ago(2.5 * DAY).toISOString();
    expect(await ids(`${cowatch.url}/recommend/1?asOf=${before}`)).toEqual(['c1', 'c2', 'c3', 'd2', 'd3', 'h1', 'h2', 'p1', 'p2', 'p3', 'p4', 'p5']);
    expect(await ids(`${cowatch.url}/recommend/999999?asOf=${before}`)).toEqual(['d1', 'c1', 'c2', 'c3', 'd2', 'd3', 'h1', 'h2', 'p1', 'p2', 'p3', 'p4', 'p5']);
    const h = JSON.parse((await request(`${cowatch.url}/healthz`)).body);
    expect(h.lists.asOfCached).toBeGreaterThan(0);
  });

  it('cowatch-v1 ranks by co-watches blended with recent starts, from Postgres alone', async () => {
    // d1's audience (6) shares one viewer each with n1 (1), d2 (2) and c1 (5): cosines 0.41, 0.29,
    // 0.18, over the best → 1, 0.71, 0.45. The prior, starts in 21 days / viewers^0.3: d1 5/6^0.3
    // = 2.92 (the largest), c1 4/5^0.3 = 2.47, h1 2/3^0.3 = 1.44, n1 1, d2 1/2^0.3 = 0.81; × 3 / 2.92
    // and added: c1 2.98, n1 2.03, d2 1.54, h1 1.48; then the padding (the old movies: no recent start).
    expect(await ids(`${cowatch.url}/recommend/1`)).toEqual(['c1', 'n1', 'd2', 'h1', 'p1', 'p2', 'p3', 'p4', 'p5', 'd3', 'c2', 'c3', 'h2']);
    const h = JSON.parse((await request(`${cowatch.url}/healthz`)).body);
    expect(h.model.rule).toBe('cowatch');
    expect(h.lists).toMatchObject({ coWatchMovies: 14, coWatchUsers: 21 });
    expect((await request(`${cowatch.url}/recommend/1`)).headers['x-marquee-outcome']).toBe('model');
    expect((await request(`${cowatch.url}/recommend/424242`)).headers['x-marquee-outcome']).toBe('cold-start');
  });

  it('cowatch-v1 needs no vectors: without its collection it is ready and ranks the same', async () => {
    const svc = await startService(db.name, writeSpec(dir, 'cowatch-v1.json', `missing_${collection}`, 'cowatch-novectors'));
    try {
      const h = JSON.parse((await request(`${svc.url}/healthz`)).body);
      expect(h.degraded).toBe(false);
      expect(h.vectors.count).toBe(0);
      expect(await ids(`${svc.url}/recommend/1`)).toEqual(await ids(`${cowatch.url}/recommend/1`));
      expect((await request(`${svc.url}/recommend/1`)).headers['x-marquee-outcome']).toBe('model');
    } finally {
      await stop(svc.proc);
    }
  });

  it('answers from the cached list within 600 ms when Postgres stalls, and counts the fallback', async () => {
    // User 1's history is in memory by now (asked before), so it needs no Postgres.
    const kept = await request(`${affinity.url}/recommend/1`);
    // Users 800…804 get a history after the slot read every history (long ago: outside every
    // list's window): theirs must be read from Postgres, and the read waits on the lock.
    const withHistory = async () => JSON.parse((await request(`${affinity.url}/healthz`)).body).history.usersWithHistory as number;
    const known = await withHistory();
    await db.pool.query(`INSERT INTO watches (user_id, movie_id, first_at, last_at, minutes, max_minute) SELECT u, 'p5', $1, $1, 10, 10 FROM generate_series(800, 804) u`, [ago(40 * DAY)]);
    await waitForHttp(`${affinity.url}/healthz`, 3000, (r) => JSON.parse(r.body).history.usersWithHistory === known + 5);
    expect(await withHistory()).toBe(known + 5);
    const locker = await db.pool.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE watches IN ACCESS EXCLUSIVE MODE');
      const replies = await Promise.all(Array.from({ length: 5 }, (_, i) => request(`${affinity.url}/recommend/${800 + i}`)));
      for (const r of replies) {
        expect(r.status).toBe(200);
        expect(r.ms).toBeLessThan(600);
        expect(r.headers['x-marquee-outcome']).toBe('fallback:deadline');
        expect(r.body.split(',').slice(0, 2)).toEqual(['c1', 'h1']);
      }
      // Nobody can change user 1's watches while the lock is held: the kept history is exact.
      const r = await request(`${affinity.url}/recommend/1`);
      expect(r.ms).toBeLessThan(600);
      expect(r.headers['x-marquee-outcome']).toBe('model');
      expect(r.body).toBe(kept.body);
      // As of a time whose lists are built already, the fallback is the cold-start list of then
      // (24 h before: d1 twice; then the counts of then), not today's.
      const then = await request(`${affinity.url}/recommend/1?asOf=${ago(2.5 * DAY).toISOString()}`);
      expect(then.headers['x-marquee-outcome']).toBe('fallback:deadline');
      expect(then.body.split(',')).toEqual(['d1', 'c1', 'c2', 'c3', 'd2', 'd3', 'h1', 'h2', 'p1', 'p2', 'p3', 'p4', 'p5']);
    } finally {
      await locker.query('ROLLBACK');
      locker.release();
      await db.pool.query('DELETE FROM watches WHERE user_id BETWEEN 800 AND 804');
    }
    const metrics = (await request(`${affinity.url}/metrics`)).body;
    expect(metrics).toMatch(/inference_fallbacks_total\{reason="deadline"\} [5-9]/);
    expect(metrics).toMatch(/inference_request_duration_seconds_bucket\{(?=[^}]*outcome="model")(?=[^}]*le="0.025")[^}]*\} \d+/);
    expect(metrics).toMatch(/inference_bad_requests_total \d+/);
    // And back to model answers once the lock is gone.
    expect((await request(`${affinity.url}/recommend/1`)).headers['x-marquee-outcome']).toBe('model');
  });

  it('starts without ChromaDB, picks vectors up when it comes, and stays on time when it stops', async () => {
    const port = await freePort();
    const chromaDir = mkdtempSync(path.join(os.tmpdir(), 'marquee-chroma-'));
    const own = `http://127.0.0.1:${port}`;
    let server: ChildProcess | undefined;
    let svc: Service | undefined;
    try {
      // ChromaDB not there yet: the service starts and serves popularity, and says so.
      svc = await startService(db.name, writeSpec(dir, 'affinity-v1.json', collection, 'affinity-outage'), { MARQUEE_CHROMA_URL: own, INFERENCE_REFRESH_MS: '300' }, false);
      const h0 = JSON.parse((await request(`${svc.url}/healthz`)).body);
      expect(h0.degraded).toBe(true);
      expect(h0.vectors.count).toBe(0);
      const early = await request(`${svc.url}/recommend/1`);
      expect(early.status).toBe(200);
      await waitForHttp(`${svc.url}/healthz`, 10_000, (r) => JSON.parse(r.body).lists.refreshedAt !== null);
      const e2 = await request(`${svc.url}/recommend/1`);
      expect(e2.headers['x-marquee-outcome']).toBe('fallback:vectors_unavailable');
      expect(e2.body.split(',').slice(0, 2)).toEqual(['c1', 'h1']);

      server = spawn(chromaBinary(), ['run', '--path', chromaDir, '--host', '127.0.0.1', '--port', String(port)], {
        env: { ...process.env, ANONYMIZED_TELEMETRY: 'False' }, stdio: 'ignore',
      });
      await waitForHttp(`${own}/api/v2/heartbeat`, 60_000, (r) => r.status === 200);
      await createCollection(chromaClientAt(own), collection);
      await waitForHttp(`${svc.url}/healthz`, 20_000, (r) => JSON.parse(r.body).degraded === false);
      const warm = await ids(`${svc.url}/recommend/1`);
      expect(warm.slice(0, 2)).toEqual(['d2', 'd3']);

      server.kill('SIGKILL');
      await new Promise((r) => server!.once('exit', r));
      // Every answer stays 200, on time, and ranked from the vectors held in memory.
      for (let i = 0; i < 40; i++) {
        const r = await request(`${svc.url}/recommend/${i % 5}`);
        expect(r.status).toBe(200);
        expect(r.ms).toBeLessThan(600);
        if (i % 5 === 1) expect(r.body.split(',')).toEqual(warm);
        await new Promise((res) => setTimeout(res, 25));
      }
      const h = JSON.parse((await request(`${svc.url}/healthz`)).body);
      expect(h.vectors.state).toBe('ready');
      expect(h.vectors.lastError).toMatch(/chroma|connect/i);
      expect((await request(`${svc.url}/metrics`)).body).toMatch(/inference_errors_total\{kind="chroma"\} [1-9]/);
    } finally {
      if (server && server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
      await stop(svc?.proc);
      rmSync(chromaDir, { recursive: true, force: true });
    }
  });

  it('reads many histories in one query exactly as one by one, and a slot starts with them in memory', async () => {
    const users = [1, 2, 3, 4, 5, 10, 100, 424242];
    const bulk = await readHistories(db.pool, users);
    const byMovie = (h: readonly HistoryEntry[]) => [...h].sort((a, b) => (a.movieId < b.movieId ? -1 : 1));
    for (const u of users) expect(byMovie(bulk.get(u)!), `user ${u}`).toEqual(byMovie(await readHistory(db.pool, u)));
    expect(bulk.get(3)!.map((h) => h.movieId).sort()).toEqual(['c1', 'd1']);
    expect(bulk.get(424242)).toEqual([]);
    const recent = await recentlyActiveUsers(db.pool, 3);
    expect(recent).toHaveLength(3);
    expect(recent).toContain(10); // an hour ago, the latest watch of all
    const h = JSON.parse((await request(`${taste.url}/healthz`)).body).history;
    // Every user with a watch when the slot started (earlier tests have added some since).
    const atStart = new Set(WATCHES.map((w) => w.user)).size;
    expect(h.state).toBe('listening');
    expect(h.preloaded, JSON.stringify(h)).toBe(atStart);
    expect(h.usersWithHistory).toBeGreaterThanOrEqual(atStart);
  });

  // Last, since it changes the data (and puts it back): user 7 is nobody else's.
  it('keeps a history in memory and drops it as soon as a watch, a rating or a runtime changes', async () => {
    const url = `${affinity.url}/recommend/7`;
    const stats = async () => JSON.parse((await request(`${affinity.url}/healthz`)).body).history as { state: string; hits: number; misses: number; invalidations: number };
    expect((await stats()).state).toBe('listening');
    /** The answer once it satisfies `ok`: there is no expiry, so only the change's notice can bring it. */
    const until = async (ok: (a: string[]) => boolean, what: string): Promise<string[]> => {
      const end = Date.now() + 3000;
      for (;;) {
        const a = await ids(url);
        if (ok(a)) return a;
        if (Date.now() > end) throw new Error(`${what}: still ${a.join(',')} after 3 s`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const cold = await ids(url);
    expect(cold.slice(0, 2)).toEqual(['c1', 'h1']);
    const before = await stats();
    expect(await ids(url)).toEqual(cold);
    expect((await stats()).hits).toBe(before.hits + 1);

    try {
      // c1 watched through, long ago (outside every list's window): its neighbours lead, c1 is excluded.
      await db.pool.query(`INSERT INTO watches (user_id, movie_id, first_at, last_at, minutes, max_minute) VALUES (7, 'c1', $1, $1, 100, 100)`, [ago(40 * DAY)]);
      const watched = await until((a) => a[0] !== 'c1', 'after the watch');
      expect(watched.slice(0, 2).sort()).toEqual(['c2', 'c3']);
      // Rated 1: a disliked source counts against its neighbours, and nothing is left to rank.
      await db.pool.query(`INSERT INTO ratings (user_id, movie_id, rating, rated_at) VALUES (7, 'c1', 1, $1)`, [ago(40 * DAY)]);
      expect((await until((a) => a[0] === 'h1', 'after the rating')).slice(0, 2)).toEqual(['h1', 'p1']);
      await db.pool.query('DELETE FROM ratings WHERE user_id = 7');
      expect((await until((a) => a[0] !== 'h1', 'after the rating was deleted')).slice(0, 2).sort()).toEqual(['c2', 'c3']);
      // Unrated, the watch counts by the share of the runtime seen: 100 of 1000 minutes is a dislike.
      await db.pool.query(`UPDATE movies SET runtime = 1000 WHERE id = 'c1'`);
      await until((a) => a[0] === 'h1', 'after the runtime changed');
      const after = await stats();
      expect(after.invalidations).toBeGreaterThanOrEqual(before.invalidations + 4);
      expect(after.hits).toBeGreaterThan(before.hits);
    } finally {
      await db.pool.query(`UPDATE movies SET runtime = 100 WHERE id = 'c1'`);
      await db.pool.query('DELETE FROM watches WHERE user_id = 7');
    }
    expect(await until((a) => a[0] === 'c1', 'after the watch was deleted')).toEqual(cold);
  });
});
