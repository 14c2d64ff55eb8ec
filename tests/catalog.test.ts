import { spawn } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import path from 'node:path';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, projectRoot } from '../lib/config.ts';
import { databaseUrl, type Pool } from '../lib/db.ts';
import { fillOnce } from '../services/catalog/fill.ts';
import { TokenBucket } from '../services/catalog/ratelimit.ts';
import { freePort } from '../testkit/net.ts';
import { scratchDatabase } from './support/db.ts';

// A small stand-in for the movie/user info API: known answers, 404s, a flaky id and one that hangs.
const movies: Record<string, Record<string, unknown>> = {
  'the+shawshank+redemption+1994': {
    id: 'the+shawshank+redemption+1994', title: 'The Shawshank Redemption', year: 1994, genres: ['Drama', 'Crime'],
    original_language: 'en', popularity: 51.6, vote_average: 8.5, vote_count: 8358, runtime: 142, release_date: '1994-09-23',
  },
  // TMDB's raw shape: genres as objects, no year (derived from the date), numbers as strings.
  'amelie+2001': {
    id: 'amelie+2001', title: 'Amélie', genres: [{ id: 35, name: 'Comedy' }, { id: 10749, name: 'Romance' }],
    original_language: 'fr', popularity: '12.5', vote_average: 7.8, vote_count: 3000, runtime: 122, release_date: '2001-04-25',
  },
  'flaky+movie+2010': { id: 'flaky+movie+2010', title: 'Flaky', year: 2010, genres: ['Horror'], original_language: 'en', popularity: 2, vote_average: 5, vote_count: 10, runtime: 90, release_date: '2010-01-01' },
  "l'homme+%+part+1999": { id: "l'homme+%+part+1999", title: "L'homme", year: 1999, genres: [], original_language: 'fr', popularity: 1, vote_average: 6, vote_count: 1, runtime: 80, release_date: '' },
};
for (let i = 0; i < 30; i++) {
  movies[`filler+${i}+2000`] = { id: `filler+${i}+2000`, title: `Filler ${i}`, year: 2000, genres: ['Comedy'], original_language: 'en', popularity: i, vote_average: 6, vote_count: i, runtime: 90, release_date: '2000-01-01' };
}
const users: Record<number, Record<string, unknown>> = {
  1: { user_id: 1, age: 34, occupation: 'scientist', gender: 'F' },
  2: { user_id: 2, age: 19, occupation: 'college/grad student', gender: 'M' },
};

const requests: { path: string; at: number }[] = [];
let flakyFailures = 2;
let api: Server;
let base = '';
let db: { pool: Pool; name: string; drop: () => Promise<void> };

beforeAll(async () => {
  db = await scratchDatabase('catalog');
  const app = express();
  app.get('/movie/:id', (req, res) => {
    requests.push({ path: req.path, at: performance.now() });
    const id = req.params.id;
    if (id === 'flaky+movie+2010' && flakyFailures > 0) { flakyFailures--; res.status(500).send('boom'); return; }
    if (id === 'old+api+missing+1990') { res.json({ message: 'movie not found' }); return; }
    if (id === 'hangs+forever+2020') return; // never answers
    const m = movies[id];
    if (!m) { res.status(404).json({ message: 'movie not found' }); return; }
    res.json(m);
  });
  app.get('/user/:id', (req, res) => {
    requests.push({ path: req.path, at: performance.now() });
    const u = users[Number(req.params.id)];
    if (!u) { res.status(404).json({ message: 'user not found' }); return; }
    res.json(u);
  });
  api = await new Promise<Server>((resolve) => { const s = app.listen(0, '127.0.0.1', () => resolve(s)); });
  base = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;
});

afterAll(async () => {
  api?.closeAllConnections();
  api?.close();
  // pg-pool's end() resolves before its clients have closed, and the DROP ... WITH (FORCE) in
  // drop() can then kill one mid-close; that error must not count against the tests.
  db?.pool.on('error', () => undefined);
  await db?.drop();
});

async function insertIds(movieIds: string[], userIds: number[]): Promise<void> {
  await db.pool.query('INSERT INTO movies (id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING', [movieIds]);
  await db.pool.query('INSERT INTO users (id) SELECT unnest($1::int[]) ON CONFLICT DO NOTHING', [userIds]);
}

describe('catalog fillOnce', () => {
  it('fills known ids, records 404s without blocking, retries 5xx, and honours the rate limit', async () => {
    await insertIds([...Object.keys(movies), 'no+such+movie+1900', 'old+api+missing+1990'], [1, 2, 99]);
    const rate = 20;
    const r = await fillOnce(db.pool, base, { rate, burst: 1, concurrency: 6, retryBaseMs: 20, batchSize: 10 });

    expect(r.fetched).toEqual({ movie: Object.keys(movies).length, user: 2 });
    expect(r.notFound).toEqual({ movie: 2, user: 1 });
    expect(r.failed).toEqual({ movie: 0, user: 0 });
    expect(r.pending).toEqual({ movie: 2, user: 1 });
    expect(r.requests).toBe(requests.length);

    const { rows: [shaw] } = await db.pool.query("SELECT *, release_date::text AS date FROM movies WHERE id = 'the+shawshank+redemption+1994'");
    expect(shaw).toMatchObject({ title: 'The Shawshank Redemption', year: 1994, genres: ['Drama', 'Crime'], original_language: 'en', popularity: 51.6, vote_average: 8.5, vote_count: 8358, runtime: 142, date: '1994-09-23', fetch_attempts: 1, last_error: null });
    expect(shaw.fetched_at).toBeInstanceOf(Date);
    const { rows: [amelie] } = await db.pool.query("SELECT year, genres, popularity FROM movies WHERE id = 'amelie+2001'");
    expect(amelie).toEqual({ year: 2001, genres: ['Comedy', 'Romance'], popularity: 12.5 });
    // Slug punctuation survives the URL round trip; an empty date is stored as NULL.
    const { rows: [odd] } = await db.pool.query("SELECT title, release_date FROM movies WHERE id = $1", ["l'homme+%+part+1999"]);
    expect(odd).toEqual({ title: "L'homme", release_date: null });

    // The flaky id was answered 500 twice, then filled in the same pass.
    expect(requests.filter((q) => q.path === '/movie/flaky+movie+2010')).toHaveLength(3);
    const { rows: [flaky] } = await db.pool.query("SELECT title, fetched_at IS NOT NULL AS done FROM movies WHERE id = 'flaky+movie+2010'");
    expect(flaky).toEqual({ title: 'Flaky', done: true });

    const { rows: missing } = await db.pool.query(
      "SELECT id, fetch_attempts, last_error, fetched_at, next_fetch_at > now() + interval '1 hour' AS later FROM movies WHERE id IN ('no+such+movie+1900', 'old+api+missing+1990') ORDER BY id");
    expect(missing.map((m) => [m.id, m.fetch_attempts, m.fetched_at, m.later])).toEqual([['no+such+movie+1900', 1, null, true], ['old+api+missing+1990', 1, null, true]]);
    expect(missing[0].last_error).toMatch(/^404/);
    expect(missing[1].last_error).toMatch(/not found/);
    const { rows: [u] } = await db.pool.query('SELECT age, occupation, gender FROM users WHERE id = 1');
    expect(u).toEqual({ age: 34, occupation: 'scientist', gender: 'F' });
    const { rows: [u99] } = await db.pool.query('SELECT fetched_at, fetch_attempts, last_error FROM users WHERE id = 99');
    expect(u99).toMatchObject({ fetched_at: null, fetch_attempts: 1 });

    // Rate (timestamps taken at the server, so each carries some scheduling jitter): with burst 1,
    // any 6 consecutive requests span at least 5/rate, and no 1 s window holds more than rate + 1.
    const times = requests.map((q) => q.at).sort((a, b) => a - b);
    expect(times.length).toBeGreaterThan(35);
    for (let i = 0; i + 5 < times.length; i++) expect(times[i + 5] - times[i]).toBeGreaterThan((5000 / rate) * 0.85);
    for (let i = 0; i < times.length; i++) expect(times.filter((t) => t >= times[i] && t < times[i] + 1000).length).toBeLessThanOrEqual(rate + 1);
    expect(times[times.length - 1] - times[0]).toBeGreaterThanOrEqual(((times.length - 1) / rate) * 1000 * 0.9);
  });

  it('leaves 404s alone until their retry time, picks up ids added later, and retries a due 404', async () => {
    const before = requests.length;
    const quiet = await fillOnce(db.pool, base, { rate: 100 });
    expect(quiet.requests).toBe(0);
    expect(requests.length).toBe(before);

    // A movie ingest inserts after the first pass is filled by the next one.
    movies['late+arrival+2024'] = { id: 'late+arrival+2024', title: 'Late Arrival', year: 2024, genres: ['Drama'], original_language: 'en', popularity: 3, vote_average: 7, vote_count: 2, runtime: 100, release_date: '2024-02-02' };
    await insertIds(['late+arrival+2024'], []);
    await db.pool.query("UPDATE movies SET next_fetch_at = now() - interval '1 second' WHERE id = 'no+such+movie+1900'");
    const r = await fillOnce(db.pool, base, { rate: 100 });
    expect(r.fetched.movie).toBe(1);
    expect(r.notFound.movie).toBe(1);
    expect(r.requests).toBe(2);
    const { rows } = await db.pool.query("SELECT id, fetch_attempts, fetched_at IS NOT NULL AS done FROM movies WHERE id IN ('late+arrival+2024', 'no+such+movie+1900') ORDER BY id");
    expect(rows).toEqual([{ id: 'late+arrival+2024', fetch_attempts: 1, done: true }, { id: 'no+such+movie+1900', fetch_attempts: 2, done: false }]);
  });

  it('records a timeout as a transient failure with a short retry time', async () => {
    await insertIds(['hangs+forever+2020'], []);
    const r = await fillOnce(db.pool, base, { rate: 100, timeoutMs: 150, retries: 1, retryBaseMs: 10, errorRetryMs: 30_000 });
    expect(r.failed.movie).toBe(1);
    expect(requests.filter((q) => q.path === '/movie/hangs+forever+2020')).toHaveLength(2);
    const { rows: [m] } = await db.pool.query(
      "SELECT fetch_attempts, last_error, next_fetch_at BETWEEN now() + interval '10 seconds' AND now() + interval '2 minutes' AS soon FROM movies WHERE id = 'hangs+forever+2020'");
    expect(m.fetch_attempts).toBe(1);
    expect(m.last_error).toMatch(/timeout/);
    expect(m.soon).toBe(true);
  });

  it('a shared token bucket serves waiters in order and keeps the rate', async () => {
    const bucket = new TokenBucket(50, 1);
    const t0 = performance.now();
    const order: number[] = [];
    await Promise.all(Array.from({ length: 11 }, (_, i) => bucket.take().then(() => order.push(i))));
    const ms = performance.now() - t0;
    expect(order).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(ms).toBeGreaterThanOrEqual(10 * 20 * 0.9);
  });
});

describe('catalog service', () => {
  it('fills new rows by polling, serves /healthz and /metrics, and stops on SIGTERM', async () => {
    await insertIds([], [2001]);
    users[2001] = { user_id: 2001, age: 50, occupation: 'writer', gender: 'M' };
    const port = await freePort();
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(projectRoot, 'services/catalog/main.ts')], {
      cwd: projectRoot,
      env: { ...process.env, MARQUEE_POSTGRES_URL: databaseUrl(loadConfig(), db.name), CATALOG_API: base, CATALOG_PORT: String(port), CATALOG_POLL_MS: '200', CATALOG_VECTORS: '0', CATALOG_RATE: '200' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (c) => (output += c));
    child.stderr.on('data', (c) => (output += c));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const deadline = Date.now() + 20_000;
      let filled = false;
      while (Date.now() < deadline && !filled) {
        await new Promise((r) => setTimeout(r, 200));
        const { rows } = await db.pool.query('SELECT fetched_at IS NOT NULL AS done FROM users WHERE id = 2001');
        filled = rows[0].done;
      }
      expect(filled, output).toBe(true);
      // A movie added while the service runs is picked up by polling.
      movies['while+running+2025'] = { id: 'while+running+2025', title: 'While Running', year: 2025, genres: ['Drama'], original_language: 'en', popularity: 1, vote_average: 6, vote_count: 1, runtime: 90, release_date: '2025-01-01' };
      await insertIds(['while+running+2025'], []);
      let done = false;
      while (Date.now() < deadline && !done) {
        await new Promise((r) => setTimeout(r, 200));
        done = (await db.pool.query("SELECT fetched_at IS NOT NULL AS done FROM movies WHERE id = 'while+running+2025'")).rows[0].done;
      }
      expect(done, output).toBe(true);

      const health = (await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()) as { pending: { user: number } };
      expect(health).toMatchObject({ status: 'ok', service: 'catalog', api: base });
      expect(health.pending.user).toBe(1); // user 99 (404)
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(metrics).toMatch(/catalog_fetched_total\{kind="user"\} 1/);
      expect(metrics).toMatch(/catalog_pending\{kind="movie"\} \d+/);
    } finally {
      child.kill('SIGTERM');
    }
    const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('timeout'), 10_000))]);
    expect(code, output).toBe(0);
    expect(output).toMatch(/catalog: stopped/);
  }, 40_000);
});
