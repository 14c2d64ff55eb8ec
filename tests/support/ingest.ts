import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { parseLine } from '../../lib/events/parser.ts';
import { projectRoot, type Config } from '../../lib/config.ts';
import type { Pool } from '../../lib/db.ts';
import { kafkaClient, produceLines } from '../../lib/kafka.ts';
import { Ingest } from '../../services/ingest/consumer.ts';
import { scratchDatabase, type ScratchDatabase } from './db.ts';

/** What Postgres must hold after ingesting `lines`, computed straight from the lines (not by the ingest code). */
export interface Expected {
  watches: number; watchMinutes: number; ratings: number; ratingSum: number;
  accounts: number; recommendations: number; deadLetters: number; users: number; movies: number;
}

export function expectedRows(lines: string[]): Expected {
  const watch = new Map<string, Set<number>>();
  const rating = new Map<string, { ms: number; rating: number }>();
  const accounts = new Set<number>();
  const users = new Set<number>();
  const movies = new Set<string>();
  let recommendations = 0;
  let dead = 0;
  for (const line of lines) {
    const r = parseLine(line);
    if (!r.ok) { dead++; continue; }
    const e = r.event;
    users.add(e.userId);
    if (e.kind === 'watch') {
      movies.add(e.movieId);
      const k = `${e.userId} ${e.movieId}`;
      if (!watch.has(k)) watch.set(k, new Set());
      watch.get(k)!.add(e.minute);
    } else if (e.kind === 'rate') {
      movies.add(e.movieId);
      const k = `${e.userId} ${e.movieId}`;
      const prev = rating.get(k);
      if (!prev || e.atMs >= prev.ms) rating.set(k, { ms: e.atMs, rating: e.rating });
    } else if (e.kind === 'account') {
      accounts.add(e.userId);
    } else {
      recommendations++;
      for (const id of e.movieIds) movies.add(id);
    }
  }
  let watchMinutes = 0;
  for (const s of watch.values()) watchMinutes += s.size;
  let ratingSum = 0;
  for (const r of rating.values()) ratingSum += r.rating;
  return { watches: watch.size, watchMinutes, ratings: rating.size, ratingSum, accounts: accounts.size, recommendations, deadLetters: dead, users: users.size, movies: movies.size };
}

export async function actualRows(pool: Pool): Promise<Expected> {
  const { rows: [r] } = await pool.query(`SELECT
    (SELECT count(*) FROM watches)::int AS watches,
    (SELECT coalesce(sum(minutes), 0) FROM watches)::int AS "watchMinutes",
    (SELECT count(*) FROM ratings)::int AS ratings,
    (SELECT coalesce(sum(rating), 0) FROM ratings)::int AS "ratingSum",
    (SELECT count(*) FROM accounts)::int AS accounts,
    (SELECT count(*) FROM recommendation_events)::int AS recommendations,
    (SELECT count(*) FROM dead_letters)::int AS "deadLetters",
    (SELECT count(*) FROM users)::int AS users,
    (SELECT count(*) FROM movies)::int AS movies`);
  return r as Expected;
}

/** Sum of the next offsets stored in Postgres for a topic: how many messages ingest has written. */
export async function ingestedCount(pool: Pool, topic: string): Promise<number> {
  const { rows } = await pool.query('SELECT coalesce(sum(next_offset), 0)::bigint AS n FROM ingest_offsets WHERE topic = $1', [topic]);
  return Number(rows[0].n);
}

export async function waitForIngested(pool: Pool, topic: string, count: number, timeoutMs = 120_000, alive?: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let n = 0;
  while (Date.now() < deadline) {
    n = await ingestedCount(pool, topic);
    if (n >= count) return;
    if (alive && !alive()) throw new Error(`the ingest process died after ${n} of ${count} messages`);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`ingest wrote ${n} of ${count} messages within ${timeoutMs / 1000} s`);
}

/**
 * Produces `lines` to `topic` slice by slice while a test acts on a running ingest, and holds the
 * last slice back until `release` settles: whatever the test does before releasing (a kill, say)
 * happens mid-stream with lines still to come, however fast ingest has become.
 */
export async function produceHoldingLast(cfg: Config, topic: string, lines: readonly string[], release: Promise<unknown>, slice = 2_500): Promise<number> {
  let produced = 0;
  for (let i = 0; i < lines.length; i += slice) {
    if (i + slice >= lines.length) await release.catch(() => undefined);
    produced += await produceLines(cfg, lines.slice(i, i + slice), { topic });
  }
  return produced;
}

/** What withIngest and runIngest hand a test: the ingest and every line it logged. */
export interface IngestRun { ingest: Ingest; groupId: string; logged: string[] }

/**
 * An in-process Ingest of `topic` into `pool` (consumer group `groupId`), started, for as long as
 * `fn` runs; stopped afterwards whatever happened. A test may stop it earlier itself (stop is
 * idempotent), e.g. to assert on the rows once it is quiet.
 */
export async function runIngest<T>(cfg: Config, pool: Pool, opts: { topic: string; groupId: string }, fn: (run: IngestRun) => Promise<T>): Promise<T> {
  const logged: string[] = [];
  const ingest = new Ingest(cfg, pool, { topic: opts.topic, groupId: opts.groupId, log: (l) => logged.push(l) });
  try {
    await ingest.start();
    return await fn({ ingest, groupId: opts.groupId, logged });
  } finally {
    await ingest.stop();
  }
}

/**
 * A scratch database named after `name` and an in-process Ingest of `topic` into it (group
 * g-<database>), started, for as long as `fn` runs; then the ingest is stopped and the database
 * dropped, whatever happened.
 */
export async function withIngest<T>(cfg: Config, name: string, topic: string, fn: (run: IngestRun & { db: ScratchDatabase }) => Promise<T>): Promise<T> {
  const db = await scratchDatabase(name);
  try {
    return await runIngest(cfg, db.pool, { topic, groupId: `g-${db.name}` }, (run) => fn({ ...run, db }));
  } finally {
    await db.drop();
  }
}

/** The real ingest service as a child process, pointed at a scratch database and topic. */
export function spawnIngest(databaseUrl: string, topic: string, groupId: string): ChildProcess & { output: string[] } {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(projectRoot, 'services/ingest/main.ts')], {
    cwd: projectRoot,
    env: { ...process.env, MARQUEE_POSTGRES_URL: databaseUrl, INGEST_TOPIC: topic, INGEST_GROUP_ID: groupId, INGEST_PORT: '0', MARQUEE_KAFKA_QUIET: '1', INGEST_SESSION_TIMEOUT_MS: '10000' },
    stdio: ['ignore', 'pipe', 'pipe'],
  }) as ChildProcess & { output: string[] };
  child.output = [];
  child.stdout!.on('data', (c: Buffer) => child.output.push(c.toString()));
  child.stderr!.on('data', (c: Buffer) => child.output.push(c.toString()));
  return child;
}

export function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

export async function deleteTopic(cfg: Config, topic: string): Promise<void> {
  const admin = kafkaClient(cfg, 'test-admin').admin();
  await admin.connect();
  try { await admin.deleteTopics({ topics: [topic] }); } catch { /* already gone */ } finally { await admin.disconnect(); }
}
