// The platform simulator: world, offline lines, info API, traffic loop, and Kafka production.
// The Kafka tests need the stack's broker (npm run stack -- up); the rest is in-process.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import path from 'node:path';
import express from 'express';
import type { Admin } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, projectRoot } from '../lib/config.ts';
import { atFromMs } from '../lib/events/format.ts';
import { parseLine } from '../lib/events/parser.ts';
import { isValidSlug } from '../lib/events/slug.ts';
import type { LogEvent, RecommendationEvent } from '../lib/events/types.ts';
import { listen } from '../lib/http.ts';
import { readMovieLens } from '../lib/movielens/read.ts';
import { ensureTopic, kafkaClient, produceLines, topicOffsets, userKeyOf } from '../lib/kafka.ts';
import { hash32, Rng, WeightedSampler } from '../lib/random.ts';
import { createApi } from '../services/simulator/api.ts';
import { pickChance, pickRecommended } from '../services/simulator/behaviour.ts';
import { fastAt } from '../services/simulator/engine.ts';
import { generateLines, pastLines, topicIsEmpty } from '../services/simulator/offline.ts';
import { startsVisit } from '../services/simulator/replay-engine.ts';
import { createReplayWorld, ReplayClock, replayPastLines, replayStart } from '../services/simulator/replay-world.ts';
import { KafkaSink, MemorySink, type LineSink } from '../services/simulator/sink.ts';
import { Traffic } from '../services/simulator/traffic.ts';
import { createWorld, GENRES, type World } from '../services/simulator/world.ts';
import { scratchDatabase } from './support/db.ts';
import { databaseUrl } from '../lib/db.ts';
import { actualRows, exited, expectedRows, spawnIngest, waitForIngested } from './support/ingest.ts';
import { requireServer } from './support/servers.ts';

const cfg = loadConfig();

function parsed(line: string): LogEvent {
  const r = parseLine(line);
  if (!r.ok) throw new Error(`expected ${JSON.stringify(line)} to parse, got "${r.reason}"`);
  return r.event;
}

async function serve(app: express.Express): Promise<{ server: Server; base: string }> {
  const server = await listen(app, 0);
  return { server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

describe('random', () => {
  it('is deterministic for a seed and differs across seeds', () => {
    const a = new Rng(1), b = new Rng(1), c = new Rng(2);
    const xs = Array.from({ length: 50 }, () => a.next());
    expect(Array.from({ length: 50 }, () => b.next())).toEqual(xs);
    expect(Array.from({ length: 50 }, () => c.next())).not.toEqual(xs);
    expect(hash32(1, 2)).not.toBe(hash32(2, 1));
  });

  it('keeps its helpers in range and roughly fair', () => {
    const r = new Rng(7);
    const counts = [0, 0, 0];
    let sum = 0, sq = 0;
    for (let i = 0; i < 30_000; i++) {
      const f = r.next();
      expect(f >= 0 && f < 1).toBe(true);
      const k = r.int(3, 5);
      expect(k >= 3 && k <= 5 && Number.isInteger(k)).toBe(true);
      counts[r.weightedIndex([1, 2, 7])]++;
      const z = r.normal();
      sum += z;
      sq += z * z;
    }
    expect(counts[2] / 30_000).toBeCloseTo(0.7, 1);
    expect(counts[0] / 30_000).toBeCloseTo(0.1, 1);
    expect(sum / 30_000).toBeCloseTo(0, 1);
    expect(sq / 30_000).toBeCloseTo(1, 1);
    const s = r.sample(1000, 100);
    expect(new Set(s).size).toBe(100);
    expect(s.every((x, i) => x >= 0 && x < 1000 && (i === 0 || x > s[i - 1]))).toBe(true);
    const shuffled = r.shuffle([...Array(20).keys()]);
    expect([...shuffled].sort((x, y) => x - y)).toEqual([...Array(20).keys()]);
    const ws = new WeightedSampler([0, 1, 0, 3]);
    const hits = [0, 0, 0, 0];
    for (let i = 0; i < 8000; i++) hits[ws.draw(r)]++;
    expect(hits[0] + hits[2]).toBe(0);
    expect(hits[3] / 8000).toBeCloseTo(0.75, 1);
  });
});

describe('world', () => {
  const world = createWorld({ seed: 11, movies: 3000, users: 20_000 });

  it('is the same for the same seed and different for another', () => {
    const again = createWorld({ seed: 11, movies: 3000, users: 20_000 });
    expect(JSON.stringify(again.movies)).toBe(JSON.stringify(world.movies));
    for (const id of [0, 17, 19_999]) expect(again.user(id)).toEqual(world.user(id));
    const other = createWorld({ seed: 12, movies: 3000, users: 20_000 });
    expect(other.movies.map((m) => m.id)).not.toEqual(world.movies.map((m) => m.id));
  });

  it('has movies with course-style ids and sane metadata', () => {
    const genreNames = new Set(GENRES.map((g) => g.name));
    const ids = new Set<string>();
    let withoutYear = 0;
    for (const m of world.movies) {
      expect(isValidSlug(m.id)).toBe(true);
      expect(m.id).toMatch(/^[a-z0-9]+(\+[a-z0-9]+)*$/);
      ids.add(m.id);
      if (!m.id.endsWith(`+${m.year}`) && !/\+\d+$/.test(m.id)) withoutYear++;
      expect(m.title.length).toBeGreaterThan(0);
      expect(m.year).toBeGreaterThanOrEqual(1930);
      expect(m.year).toBeLessThanOrEqual(2025);
      expect(m.genres.length).toBeGreaterThanOrEqual(1);
      for (const g of m.genres) expect(genreNames.has(g)).toBe(true);
      expect(m.original_language).toMatch(/^[a-z]{2}$/);
      expect(m.popularity).toBeGreaterThan(0);
      expect(m.vote_average).toBeGreaterThanOrEqual(0);
      expect(m.vote_average).toBeLessThanOrEqual(10);
      expect(Number.isInteger(m.vote_count) && m.vote_count >= 0).toBe(true);
      expect(m.runtime).toBeGreaterThanOrEqual(60);
      expect(m.runtime).toBeLessThanOrEqual(240);
      expect(m.release_date.startsWith(`${m.year}-`)).toBe(true);
      expect(new Date(`${m.release_date}T00:00:00Z`).toISOString().slice(0, 10)).toBe(m.release_date);
    }
    expect(ids.size).toBe(world.movieCount);
    // About 5% of the ids have no year, as in the course's catalogue.
    expect(withoutYear / world.movieCount).toBeGreaterThan(0.02);
    expect(withoutYear / world.movieCount).toBeLessThan(0.09);
    // Popularity is heavy-tailed: the top movie is far above the median one.
    const pops = world.movies.map((m) => m.popularity).sort((a, b) => a - b);
    expect(pops[pops.length - 1] / pops[Math.floor(pops.length / 2)]).toBeGreaterThan(20);
    expect(world.movies[world.byPopularity[0]].popularity).toBe(pops[pops.length - 1]);
  });

  it('has users with demographics, for ids 0..users-1 only', () => {
    for (const id of [0, 1, 500, 19_999]) {
      const u = world.user(id)!;
      expect(u.user_id).toBe(id);
      expect(u.age).toBeGreaterThanOrEqual(13);
      expect(u.age).toBeLessThanOrEqual(85);
      expect(['M', 'F']).toContain(u.gender);
      expect(u.occupation.length).toBeGreaterThan(0);
    }
    expect(world.user(20_000)).toBeUndefined();
    expect(world.user(-1)).toBeUndefined();
    expect(world.user(1.5)).toBeUndefined();
  });

  it('gives affinities in [0, 1] whose genres carry signal', () => {
    // Mean affinity of movies whose main genre is the user's first favourite, of movies with
    // another favourite genre, and of the rest.
    const sum = [0, 0, 0], n = [0, 0, 0];
    let outOfRange = 0;
    for (let id = 0; id < 300; id++) {
      const u = world.user(id)!;
      const first = GENRES[u.favouriteGenres[0]].name;
      const favNames = new Set(u.favouriteGenres.map((g) => GENRES[g].name));
      for (let i = 0; i < world.movieCount; i += 3) {
        const a = world.affinity(u, i);
        if (!(a >= 0 && a <= 1)) outOfRange++;
        const genres = world.movies[i].genres;
        const k = genres[0] === first ? 0 : genres.some((g) => favNames.has(g)) ? 1 : 2;
        sum[k] += a;
        n[k]++;
      }
    }
    expect(outOfRange).toBe(0);
    const [primary, favourite, rest] = sum.map((x, k) => x / n[k]);
    expect(primary).toBeGreaterThan(rest + 0.08);
    expect(favourite).toBeGreaterThan(rest + 0.03);
    // And the top of a user's list is liked far more than an average movie.
    const u = world.user(3)!;
    const top = world.topMoviesFor(u, 20).map((id) => world.affinity(u, world.movie(id)!));
    expect(Math.min(...top)).toBeGreaterThan(0.7);
  });

  it('reaches the course size without holding users in memory', () => {
    const before = process.memoryUsage().heapUsed;
    const t0 = performance.now();
    const big = createWorld({ seed: 1, movies: 27_000, users: 1_000_000 });
    expect(big.movies.length).toBe(27_000);
    expect(big.user(999_999)!.user_id).toBe(999_999);
    for (let id = 0; id < 1_000_000; id += 997) big.user(id);
    expect(performance.now() - t0).toBeLessThan(20_000);
    expect(process.memoryUsage().heapUsed - before).toBeLessThan(300e6);
    expect(() => createWorld({ seed: 1, movies: 27_001 })).toThrow(/movies/);
    expect(() => createWorld({ seed: 1, users: 1_000_001 })).toThrow(/users/);
  });
});

describe('offline lines', () => {
  it('formats times exactly as atFromMs does', () => {
    const r = new Rng(3);
    for (let i = 0; i < 5000; i++) {
      const ms = Math.floor(r.float(Date.UTC(1971, 0, 1), Date.UTC(2090, 0, 1)));
      expect(fastAt(ms)).toEqual(atFromMs(ms));
    }
    expect(fastAt(Date.UTC(2025, 0, 1) - 1)).toEqual(atFromMs(Date.UTC(2025, 0, 1) - 1));
  });

  it('is deterministic for a seed', () => {
    const a = generateLines({ seed: 5, count: 20_000, malformedFraction: 0.01, movies: 2000, users: 10_000 });
    const b = generateLines({ seed: 5, count: 20_000, malformedFraction: 0.01, movies: 2000, users: 10_000 });
    expect(b.lines).toEqual(a.lines);
    expect([...b.malformed]).toEqual([...a.malformed]);
    const c = generateLines({ seed: 6, count: 20_000, malformedFraction: 0.01, movies: 2000, users: 10_000 });
    expect(c.lines).not.toEqual(a.lines);
  });

  it('writes lines of every kind that parse, and exactly the malformed ones that do not', () => {
    const count = 60_000;
    const g = generateLines({ seed: 42, count, malformedFraction: 0.013 });
    expect(g.lines.length).toBe(count);
    expect(g.malformed.size).toBe(Math.round(count * 0.013));
    const kinds: Record<string, number> = {};
    const lastAt = new Map<number, number>();
    const session = new Map<number, { movie: string; minute: number; at: number }>();
    let statusZero = 0, consecutive = 0;
    const problems: string[] = [];
    const check = (ok: boolean, what: string, line: string) => { if (!ok && problems.length < 20) problems.push(`${what}: ${line}`); };
    for (let i = 0; i < count; i++) {
      const line = g.lines[i];
      const r = parseLine(line);
      if (g.malformed.has(i)) {
        check(!r.ok, 'malformed line parses', line);
        continue;
      }
      if (!r.ok) { check(false, `rejected (${r.reason})`, line); continue; }
      const e = r.event;
      kinds[e.kind] = (kinds[e.kind] ?? 0) + 1;
      check(e.userId >= 0 && e.userId < g.world.userCount, 'user outside the world', line);
      check(userKeyOf(line) === String(e.userId), 'key is not the user id', line);
      // A user's lines are in time order.
      check(e.atMs >= (lastAt.get(e.userId) ?? 0), 'out of time order', line);
      lastAt.set(e.userId, e.atMs);
      if (e.kind === 'watch' || e.kind === 'rate') check(g.world.movie(e.movieId) !== undefined, 'unknown movie', line);
      if (e.kind === 'watch') {
        const prev = session.get(e.userId);
        if (prev && prev.movie === e.movieId && e.minute === prev.minute + 1) {
          check(e.atMs - prev.at === 60_000, 'next minute not a minute later', line);
          consecutive++;
        }
        session.set(e.userId, { movie: e.movieId, minute: e.minute, at: e.atMs });
      }
      if (e.kind === 'recommendation') {
        check(e.server === '127.0.0.1:8082', 'server', line);
        if (e.status === 0) {
          statusZero++;
          check(/^java\.net\./.test(e.error ?? ''), 'status 0 without a Java error', line);
        } else {
          check(e.status === 200 && e.movieIds.length === 20 && e.latencyMs < 600, 'status 200 answer', line);
          check(e.movieIds.every((id) => g.world.movie(id) !== undefined), 'unknown recommended movie', line);
        }
      }
    }
    expect(problems).toEqual([]);
    for (const k of ['watch', 'rate', 'recommendation', 'account']) expect(kinds[k], k).toBeGreaterThan(0);
    expect(statusZero).toBeGreaterThan(0);
    // Sessions are minute by minute: most watch lines continue the previous one.
    expect(consecutive / kinds.watch).toBeGreaterThan(0.8);
    expect(g.stats.lines.watch).toBe(kinds.watch);
    // Every malformed kind shows up.
    expect(Object.keys(g.stats.malformed).length).toBeGreaterThanOrEqual(8);
  });

  it('gets the malformed count exact for any fraction, including none and all', () => {
    for (const [count, f] of [[1000, 0], [1000, 1], [999, 0.5], [12_345, 0.001], [10, 0.04]] as const) {
      const g = generateLines({ seed: 9, count, malformedFraction: f, movies: 500, users: 2000 });
      expect(g.lines.length).toBe(count);
      expect(g.malformed.size).toBe(Math.round(count * f));
      const failing = g.lines.filter((l) => !parseLine(l).ok).length;
      expect(failing).toBe(g.malformed.size);
    }
  });

  it('makes 200,000 lines quickly', () => {
    const t0 = performance.now();
    const g = generateLines({ seed: 1, count: 200_000, malformedFraction: 0.01 });
    const ms = performance.now() - t0;
    console.log(`generateLines: 200,000 lines in ${Math.round(ms)} ms (${Math.round(200_000 / (ms / 1000))} lines/s)`);
    expect(g.lines.length).toBe(200_000);
    expect(ms).toBeLessThan(15_000);
  });
});

describe('info API', () => {
  const world = createWorld({ seed: 4, movies: 500, users: 1000 });
  let server: Server;
  let base: string;
  beforeAll(async () => ({ server, base } = await serve(createApi(world))));
  afterAll(() => server?.close());

  it('answers movie metadata with exactly the contract fields', async () => {
    const m = world.movies[123];
    const res = await fetch(`${base}/movie/${m.id}`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    expect(Object.keys(body).sort()).toEqual(
      ['genres', 'id', 'original_language', 'popularity', 'release_date', 'runtime', 'title', 'vote_average', 'vote_count', 'year'],
    );
    expect(body).toMatchObject({ id: m.id, title: m.title, year: m.year, genres: m.genres, runtime: m.runtime });
  });

  it('answers user info with exactly the contract fields', async () => {
    const res = await fetch(`${base}/user/999`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    expect(Object.keys(body).sort()).toEqual(['age', 'gender', 'occupation', 'user_id']);
    const u = world.user(999)!;
    expect(body).toEqual({ user_id: 999, age: u.age, occupation: u.occupation, gender: u.gender });
  });

  it('answers 404 with a message for unknown ids', async () => {
    for (const [path, msg] of [
      ['/movie/no+such+movie+1999', 'unknown movie no+such+movie+1999'],
      ['/user/1000', 'unknown user 1000'],
      ['/user/abc', 'unknown user abc'],
      ['/user/-1', 'unknown user -1'],
      ['/user/1e2', 'unknown user 1e2'],
    ]) {
      const res = await fetch(`${base}${path}`);
      expect(res.status, path).toBe(404);
      expect(await res.json()).toEqual({ error: msg });
    }
  });

  it('serves /healthz and /metrics', async () => {
    const h = await fetch(`${base}/healthz`);
    expect(h.status).toBe(200);
    expect(await h.json()).toMatchObject({ status: 'ok', service: 'simulator', movies: 500, users: 1000 });
    const m = await fetch(`${base}/metrics`);
    expect(m.status).toBe(200);
    expect(await m.text()).toContain('simulator_api_requests_total{endpoint="user",status="404"}');
  });
});

/** Runs the traffic loop against a gateway into memory until `requests` requests were answered. */
async function runTraffic(world: World, gateway: string | null, opts: { requests?: number; lines?: number; malformed?: number; timeoutMs?: number } = {}) {
  const sink = new MemorySink();
  const traffic = new Traffic({
    world, sink, seed: 77, rate: 50_000, speed: 50_000, gateway, drain: true, timeoutMs: opts.timeoutMs,
    maxRequests: opts.requests, maxLines: opts.lines, malformedFraction: opts.malformed ?? 0,
    behaviour: { recommendFraction: 1 },
  });
  traffic.start();
  await traffic.done;
  return { sink, stats: traffic.stats };
}

/**
 * From the log alone, as an evaluation would: the share of answered recommendation requests
 * followed by the user watching one of the recommended movies.
 */
function recommendedWatchShare(lines: string[]): { answered: number; followed: number; share: number } {
  const pending = new Map<number, Set<string>>();
  let answered = 0, followed = 0;
  for (const line of lines) {
    const e = parsed(line);
    if (e.kind === 'recommendation' && e.status === 200) {
      answered++;
      pending.set(e.userId, new Set(e.movieIds));
    } else if (e.kind === 'watch' && pending.has(e.userId)) {
      if (pending.get(e.userId)!.has(e.movieId)) followed++;
      pending.delete(e.userId);
    }
  }
  return { answered, followed, share: followed / answered };
}

describe('traffic loop', () => {
  const world = createWorld({ seed: 8, movies: 1000, users: 3000 });
  // The oracle model: each user's 20 favourite movies. Computed up front so that it answers fast.
  const favourites = Array.from({ length: world.userCount }, (_, u) => world.topMoviesFor(world.user(u)!, 20).join(','));

  it('earns clearly more watches for a better model', async () => {
    const good = express().get('/recommend/:user', (req, res) => { res.type('text/plain').send(favourites[Number(req.params.user)]); });
    const rng = new Rng(1);
    const random = express().get('/recommend/:user', (_req, res) => {
      res.type('text/plain').send(Array.from({ length: 20 }, () => rng.pick(world.movies).id).join(','));
    });
    const shares: number[] = [];
    for (const app of [good, random]) {
      const { server, base } = await serve(app);
      try {
        // A generous timeout: this compares what users do with the answers, and the machine may be
        // busy with other work (the 600 ms budget has its own test below).
        const { sink, stats } = await runTraffic(world, base, { requests: 1500, timeoutMs: 5000 });
        expect(stats.engine.recRequests).toBe(1500);
        expect(stats.recOk + stats.recFailed + stats.recHttpError).toBe(1500);
        expect(stats.inFlight).toBe(0);
        const port = new URL(base).port;
        // Keys are user ids, every line parses, request lines name the gateway as host:port.
        const problems = sink.lines.filter((line, i) => {
          const e = parsed(line);
          return sink.keys[i] !== String(e.userId) || (e.kind === 'recommendation' && e.server !== `127.0.0.1:${port}`);
        });
        expect(problems.slice(0, 5)).toEqual([]);
        const r = recommendedWatchShare(sink.lines);
        expect(r.answered).toBeGreaterThan(1000);
        shares.push(r.share);
      } finally {
        server.close();
      }
    }
    console.log(`share of answered requests followed by a recommended watch: good model ${shares[0].toFixed(3)}, random model ${shares[1].toFixed(3)}`);
    expect(shares[0]).toBeGreaterThan(2 * shares[1]);
    expect(shares[0] - shares[1]).toBeGreaterThan(0.3);
  });

  it('logs status 0 with the Java error for a timeout and a refused connection, and non-2xx answers', async () => {
    const hang = express().get('/recommend/:user', () => { /* never answers */ });
    const { server, base } = await serve(hang);
    try {
      const { sink } = await runTraffic(world, base, { requests: 20 });
      const recs = sink.lines.map(parsed).filter((e): e is RecommendationEvent => e.kind === 'recommendation');
      expect(recs.length).toBe(20);
      for (const e of recs) {
        expect(e.status).toBe(0);
        expect(e.error).toBe('java.net.SocketTimeoutException: Read timed out');
        expect(e.latencyMs).toBeGreaterThanOrEqual(600);
        expect(e.latencyMs).toBeLessThan(1500);
      }
    } finally {
      server.closeAllConnections();
      server.close();
    }

    // A port nobody listens on: take one, then free it.
    const { server: gone, base: goneBase } = await serve(express());
    await new Promise((r) => gone.close(r));
    const refused = await runTraffic(world, goneBase, { requests: 10 });
    const lines = refused.sink.lines.filter((l) => l.includes('recommendation request'));
    expect(lines.length).toBe(10);
    for (const l of lines) expect(l).toMatch(/, status 0, result: java\.net\.ConnectException: Connection refused \(Connection refused\), \d+ ms$/);

    const failing = express().get('/recommend/:user', (_req, res) => { res.status(500).type('text/plain').send('model crashed: out of memory, sorry'); });
    const f = await serve(failing);
    try {
      const { sink } = await runTraffic(world, f.base, { requests: 10 });
      const recs = sink.lines.map(parsed).filter((e): e is RecommendationEvent => e.kind === 'recommendation');
      expect(recs.length).toBe(10);
      for (const e of recs) expect([e.status, e.error]).toEqual([500, 'model crashed: out of memory, sorry']);
    } finally {
      f.server.close();
    }
  });

  it('holds the rate and injects malformed lines when asked', async () => {
    const sink = new MemorySink();
    const traffic = new Traffic({ world, sink, rate: 2000, speed: 600, gateway: null, malformedFraction: 0.05, durationMs: 1500 });
    const t0 = performance.now();
    traffic.start();
    await traffic.done;
    const secs = (performance.now() - t0) / 1000;
    const s = traffic.stats;
    expect(s.written).toBe(sink.lines.length);
    // Never far above the target (a fifth of a second of burst at most); some output for sure.
    expect(s.written).toBeLessThan(2000 * secs + 600);
    expect(s.written).toBeGreaterThan(500);
    const bad = sink.lines.filter((l) => !parseLine(l).ok).length;
    expect(bad).toBe(s.malformed);
    expect(bad).toBeGreaterThan(0);
    expect(s.engine.recRequests).toBe(0);
  });
});

describe('pick chance', () => {
  it('is the rate at which pickRecommended picks from the list', () => {
    const world = createWorld({ seed: 9, movies: 400, users: 500 });
    const rng = new Rng(77);
    for (const uid of [3, 42, 300]) {
      const user = world.user(uid)!;
      const ids = [...world.topMoviesFor(user, 5), ...world.byPopularity.slice(0, 15).map((i) => world.movies[i].id)];
      let picks = 0;
      for (let t = 0; t < 20_000; t++) if (pickRecommended(world, rng, user, ids) >= 0) picks++;
      expect(Math.abs(picks / 20_000 - pickChance(world, user, ids)), `user ${uid}`).toBeLessThan(0.015);
    }
  });
});

describe('Kafka', () => {
  const [host, port] = cfg.kafka.brokers[0].split(':');
  const topics: string[] = [];
  let admin: Admin;

  async function scratchTopic(): Promise<string> {
    const topic = `marquee-simulator-test-${randomBytes(4).toString('hex')}`;
    topics.push(topic);
    await ensureTopic(cfg, topic, 4);
    return topic;
  }

  async function messagesIn(topic: string): Promise<number> {
    const offsets = await topicOffsets(admin, topic);
    expect(offsets.length).toBe(4);
    return offsets.reduce((sum, p) => sum + Number(p.high) - Number(p.low), 0);
  }

  beforeAll(async () => {
    await requireServer('Kafka', Number(port), host);
    admin = kafkaClient(cfg, 'simulator-test').admin();
    await admin.connect();
  });

  afterAll(async () => {
    if (topics.length > 0) await admin?.deleteTopics({ topics }).catch(() => undefined);
    await admin?.disconnect();
  });

  it('past activity ends a minute before now, parses, and is written only into an empty topic', async () => {
    const world = createWorld({ seed: 5, movies: 300, users: 2000 });
    const endMs = Date.now();
    const lines = pastLines({ seed: 5, world, count: 20_000, endMs });
    expect(lines).toHaveLength(20_000);
    const times = lines.map((l) => {
      const r = parseLine(l);
      expect(r.ok, l).toBe(true);
      return r.ok ? r.event.atMs : NaN;
    });
    const last = Math.max(...times);
    expect(last).toBeLessThanOrEqual(endMs - 60_000);
    expect(last).toBeGreaterThan(endMs - 61_000);
    // The same activity as the plain generator's, only moved in time.
    expect(lines.map((l) => l.slice(l.indexOf(',')))).toEqual(generateLines({ seed: 5, world, count: 20_000, errorFraction: 0 }).lines.map((l) => l.slice(l.indexOf(','))));

    const topic = await scratchTopic();
    expect(await topicIsEmpty(cfg, topic)).toBe(true);
    await produceLines(cfg, lines.slice(0, 10), { topic });
    expect(await topicIsEmpty(cfg, topic)).toBe(false);
  });

  it('produceLines writes every line once', async () => {
    const topic = await scratchTopic();
    const { lines } = generateLines({ seed: 3, count: 10_000, malformedFraction: 0.01 });
    const t0 = performance.now();
    const n = await produceLines(cfg, lines, { topic });
    const ms = performance.now() - t0;
    console.log(`produceLines: 10,000 lines in ${Math.round(ms)} ms (${Math.round(10_000 / (ms / 1000))} lines/s)`);
    expect(n).toBe(10_000);
    expect(await messagesIn(topic)).toBe(10_000);
    // The malformed lines without a user id have no key and still go through.
    expect(lines.some((l) => userKeyOf(l) === null)).toBe(true);
  });

  it('the traffic loop produces through KafkaSink, counting what Kafka acknowledged', async () => {
    const topic = await scratchTopic();
    const world = createWorld({ seed: 2, movies: 500, users: 2000 });
    const sink = new KafkaSink(cfg, { topic });
    await sink.connect();
    const traffic = new Traffic({ world, sink, rate: 5000, speed: 6000, gateway: null, maxLines: 3000, malformedFraction: 0.01 });
    traffic.start();
    await traffic.done;
    await sink.close();
    expect(sink.unsent).toBe(0);
    expect(sink.produced()).toBe(traffic.stats.written);
    expect(sink.produced()).toBeGreaterThanOrEqual(3000);
    expect(await messagesIn(topic)).toBe(sink.produced());
  });

  it('the service runs, serves the API and stops on SIGTERM with everything flushed', async () => {
    const topic = await scratchTopic();
    const { server, base } = await serve(express());
    const freePort = new URL(base).port;
    await new Promise((r) => server.close(r));
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', path.join(projectRoot, 'services/simulator/main.ts'),
        '--seed', '5', '--movies', '800', '--users', '4000', '--rate', '3000', '--speed', '600',
        '--gateway', 'none', '--malformed', '0.01', '--topic', topic, `--port=${freePort}`],
      { cwd: projectRoot, env: { ...process.env, MARQUEE_KAFKA_QUIET: '1' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const deadline = Date.now() + 60_000;
      while (!out.includes('lines/s to') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(out).toContain('lines/s to');
      const movie = await fetch(`http://127.0.0.1:${freePort}/movie/${createWorld({ seed: 5, movies: 800, users: 4000 }).movies[0].id}`);
      expect(movie.status).toBe(200);
      await new Promise((r) => setTimeout(r, 2000));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      const m = /(\d+) lines produced \((\d+) written/.exec(out);
      expect(m, out).not.toBeNull();
      expect(Number(m![1])).toBe(Number(m![2]));
      expect(Number(m![1])).toBeGreaterThan(1000);
      expect(await messagesIn(topic)).toBe(Number(m![1]));
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
  it('the replay world writes its past and its replay as valid lines to Kafka, and real ingest stores them all', async () => {
    // A small data set written as RecBole files: 40 users, 30 movies, 12 ratings each over 10 days.
    const dir = mkdtempSync(path.join(os.tmpdir(), 'marquee-replay-kafka-'));
    const rng = new Rng(5);
    const t0 = Date.UTC(1998, 1, 1);
    const inter = ['user_id:token\titem_id:token\trating:float\ttimestamp:float'];
    for (let u = 1; u <= 40; u++) {
      for (const m of rng.sample(30, 12)) inter.push(`${u}\t${m + 1}\t${rng.int(1, 5)}\t${Math.floor((t0 + rng.int(0, 10 * 86_400_000)) / 1000)}`);
    }
    writeFileSync(path.join(dir, 'small.inter'), inter.join('\n'));
    writeFileSync(path.join(dir, 'small.item'), ['item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq',
      ...Array.from({ length: 30 }, (_, i) => `${i + 1}\tMovie Number ${i + 1}\t${1960 + i}\tDrama Comedy`)].join('\n'));
    writeFileSync(path.join(dir, 'small.user'), ['user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token',
      ...Array.from({ length: 40 }, (_, i) => `${i + 1}\t${20 + i}\tF\twriter\t00000`)].join('\n'));
    const world = createReplayWorld(readMovieLens(dir), { userOffset: 5000 });
    rmSync(dir, { recursive: true, force: true });
    const dataStart = replayStart(world.data, '0.3');
    const span = world.data.ratings.at(-1)!.atMs - dataStart;
    // The rest of the data set in about 3 s of wall clock.
    const clock = new ReplayClock(dataStart, Date.now(), span / 3000);
    const topic = await scratchTopic();
    const past = [...replayPastLines(world, clock)];
    expect(await produceLines(cfg, past, { topic })).toBe(past.length);

    // A gateway that recommends the same ten movies to everyone.
    const ten = world.movies.slice(0, 10).map((m) => m.id).join(',');
    const { server, base } = await serve(express().get('/recommend/:user', (_req, res) => { res.type('text/plain').send(ten); }));
    const kafka = new KafkaSink(cfg, { topic });
    const written: string[] = [];
    const tee: LineSink = {
      write: (key, line) => { written.push(line); kafka.write(key, line); },
      backlog: () => kafka.backlog(), produced: () => kafka.produced(), flush: () => kafka.flush(), close: () => kafka.close(),
    };
    await kafka.connect();
    const traffic = new Traffic({ replay: { world, clock, windowMs: 86_400_000 }, sink: tee, gateway: base, timeoutMs: 5000 });
    try {
      traffic.start();
      await traffic.done;
    } finally {
      await kafka.close();
      server.close();
    }
    expect(kafka.unsent).toBe(0);

    // Every line parses; the replay rated exactly the ratings from the replay start on, with their real values.
    const lines = [...past, ...written];
    const events = lines.map(parsed);
    const key = (user: number, movie: string, rating: number) => `${user} ${movie} ${rating}`;
    const slugOf = new Map([...world.data.movies.values()].map((m) => [m.mlId, m.slug]));
    const future = world.data.ratings.filter((r) => r.atMs >= dataStart).map((r) => key(r.userId + 5000, slugOf.get(r.mlMovieId)!, r.rating)).sort();
    const replayed = events.slice(past.length).flatMap((e) => (e.kind === 'rate' ? [key(e.userId, e.movieId, e.rating)] : [])).sort();
    expect(replayed).toEqual(future);
    // One request per visit (a user back after an hour away), each answered and logged.
    const visits = [...world.ratingsByUser.values()].reduce((n, rs) => n + rs.filter((r, i) => r.atMs >= dataStart && startsVisit(rs, i)).length, 0);
    const requestLines = events.slice(past.length).filter((e) => e.kind === 'recommendation').length;
    expect(traffic.stats.engine.recRequests).toBe(requestLines);
    expect(traffic.stats.recOk).toBe(requestLines);
    expect(requestLines).toBeGreaterThan(0);
    expect(requestLines).toBeLessThanOrEqual(visits);
    // Each user's lines in time order, the past before the replay.
    const lastAt = new Map<number, number>();
    for (const e of events) {
      expect(e.atMs, `user ${e.userId}`).toBeGreaterThanOrEqual(lastAt.get(e.userId) ?? -Infinity);
      if (e.kind !== 'recommendation') lastAt.set(e.userId, e.atMs);
    }
    expect(events.slice(0, past.length).every((e) => e.atMs < clock.logStart)).toBe(true);
    console.log(`replay through Kafka: ${past.length} lines of past, ${written.length} replayed; ${traffic.stats.engine.recommendedSessions} of ${future.length} sessions from a recommendation`);
    expect(traffic.stats.engine.recommendedSessions).toBeGreaterThan(0);

    // The real ingest service stores every line: no dead letter, the rows the lines call for.
    const db = await scratchDatabase('replay');
    const ingest = spawnIngest(databaseUrl(cfg, db.name), topic, `replay-${randomBytes(3).toString('hex')}`);
    try {
      await waitForIngested(db.pool, topic, lines.length, 120_000, () => ingest.exitCode === null);
      expect(await actualRows(db.pool)).toEqual(expectedRows(lines));
      expect((await actualRows(db.pool)).deadLetters).toBe(0);
    } finally {
      ingest.kill('SIGTERM');
      await exited(ingest);
      await db.drop();
    }
  }, 240_000);
});
