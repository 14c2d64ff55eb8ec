/**
 * `marquee provenance` and `marquee reproduce` on real Postgres, Kafka and ChromaDB.
 *
 * Provenance: fixture rows for a release v2 that was promoted over the pre-release main
 * (seed-baseline), answers served before, during and after the canary, and backups around them;
 * the command must name the version that really answered, not the release in flight.
 *
 * Reproduce: simulator lines on a topic of the test's own, ingested by the real ingest; answers
 * computed by the inference engine in process at times T0 (before any backup) and T (after a
 * backup, with more lines in between), recorded as served rows; more lines after each. Reproduce
 * must rebuild the data up to each time and return the very list that was served.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { DumpResult } from '../activities/backup.ts';
import { realActivities } from './support/activities.ts';
import { projectRoot, loadConfig } from '../lib/config.ts';
import { createPool, type Pool } from '../lib/db.ts';
import { parseLine } from '../lib/events/parser.ts';
import { ensureTopic, produceLines } from '../lib/kafka.ts';
import { createChromaClient } from '../lib/chroma.ts';
import { loadSpec, type LoadedSpec } from '../lib/models/spec.ts';
import { hash32 } from '../lib/random.ts';
import { provenanceCommand, reproduceCommand } from '../cli/provenance.ts';
import { Engine } from '../services/inference/engine.ts';
import { Ingest } from '../services/ingest/consumer.ts';
import { generateLines } from '../services/simulator/offline.ts';
import { scratchDatabase } from './support/db.ts';
import { deleteTopic, waitForIngested } from './support/ingest.ts';
import { requireServer } from './support/servers.ts';

const cfg = loadConfig();
const real = await realActivities(cfg);
const { dumpDatabase, recordBackup } = real.activities;
afterAll(() => real.close());
const quiet = { logger: new DefaultLogger('ERROR') };
const MIN = 60_000;
const HOUR = 60 * MIN;

/** Runs a command with console output captured. */
async function capture(fn: () => Promise<number>): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => { out.push(a.join(' ')); });
  const error = vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => { err.push(a.join(' ')); });
  try {
    const code = await fn();
    return { code, out: out.join('\n'), err: err.join('\n') };
  } finally {
    log.mockRestore();
    error.mockRestore();
  }
}

describe('provenance', () => {
  let db: Awaited<ReturnType<typeof scratchDatabase>>;
  const t0 = Date.UTC(2025, 2, 1);
  const at = (ms: number) => new Date(t0 + ms);
  const served: Record<string, number> = {};
  const backups: Record<string, number> = {};
  const v2 = loadSpec('models/affinity-v1.json');
  const baseline = loadSpec('models/seed-baseline.json');
  const digest = `sha256:${'ab'.repeat(32)}`;
  const commit = 'd3adb33f00d1234567890abcdef1234567890abc';

  beforeAll(async () => {
    db = await scratchDatabase('prov');
    const p = db.pool;
    const routing = (main: string, nightly: string | null, percent: number, releaseId: string | null) => JSON.stringify({
      mainUrl: 'http://127.0.0.1:3001', mainVersion: main, nightlyUrl: nightly ? 'http://127.0.0.1:3002' : null, nightlyVersion: nightly, nightlyPercent: percent, releaseId,
    });
    await p.query('INSERT INTO routing_changes (changed_at, changed_by, before, after) VALUES ($1, $2, NULL, $3)', [at(0), 'gateway', routing('seed-baseline', null, 0, null)]);
    await p.query('INSERT INTO routing_changes (changed_at, changed_by, before, after) VALUES ($1, $2, NULL, $3)', [at(1 * HOUR), 'canary v2', routing('seed-baseline', 'v2', 10, 'v2')]);
    await p.query('INSERT INTO routing_changes (changed_at, changed_by, before, after) VALUES ($1, $2, NULL, $3)', [at(3 * HOUR), 'canary v2: promote', routing('v2', null, 0, null)]);
    await p.query(
      `INSERT INTO releases (id, model_spec, spec, spec_hash, image, image_digest, git_commit, workflow_id, run_id, phase, decision, reason, started_at, ended_at)
       VALUES ('v2', $1, $2, $3, 'marquee-inference:v2', $4, $5, 'canary-v2', 'run-v2-0001', 'promoted', 'promote', 'nightly beat main', $6, $7)`,
      [v2.path, JSON.stringify(v2.spec), v2.hash, digest, commit, at(50 * MIN), at(3 * HOUR)]);
    const backup = async (name: string, ms: number, offsets: [number, number]) => {
      const { rows } = await p.query(
        `INSERT INTO backups (file, created_at, size_bytes, sha256, ingest_offsets, row_counts, release_id, manifest, workflow_id, run_id)
         VALUES ($1, $2, 1234567, $3, $4, '{}', 'seed-baseline', '{}', $5, 'run-b') RETURNING id`,
        [`/var/backups/${name}.dump`, at(ms), name.padEnd(64, '0').slice(0, 64),
          JSON.stringify([{ topic: 'movielog', partition: 0, nextOffset: offsets[0] }, { topic: 'movielog', partition: 1, nextOffset: offsets[1] }]), `backup-${name}`]);
      backups[name] = Number(rows[0].id);
    };
    await backup('b1', 30 * MIN, [10, 12]);
    await backup('b2', 2 * HOUR, [100, 120]);
    await backup('b3', 5 * HOUR, [500, 520]);
    const serve = async (name: string, ms: number, user: number, slot: string, releaseId: string | null, version: string | null, fallback: string | null = null) => {
      const { rows } = await p.query(
        `INSERT INTO served_recommendations (served_at, user_id, slot, release_id, model_version, movie_ids, latency_ms, fallback)
         VALUES ($1, $2, $3, $4, $5, $6, 12.5, $7) RETURNING id`, [at(ms), user, slot, releaseId, version, [`${name}+movie+1`, `${name}+movie+2`], fallback]);
      served[name] = Number(rows[0].id);
    };
    await serve('before', 20 * MIN, 7, 'main', null, 'seed-baseline');
    await serve('canaryMain', 2 * HOUR + 30 * MIN, 7, 'main', 'v2', 'seed-baseline');
    await serve('canaryNightly', 2 * HOUR + 40 * MIN, 8, 'nightly', 'v2', 'v2');
    await serve('after', 4 * HOUR, 7, 'main', null, 'v2');
    await serve('popular', 4 * HOUR + 10 * MIN, 9, 'popular', null, null, 'main_timeout');
  });

  afterAll(async () => {
    await db?.drop();
  });

  const json = async (...args: string[]) => {
    const r = await capture(() => provenanceCommand([...args, '--json', '--database', db.name]));
    expect(r.code, r.err).toBe(0);
    return JSON.parse(r.out);
  };

  it('names the promoted version, its spec hash, image digest, commit and run for an answer after the promotion', async () => {
    const p = await json(String(served.after));
    expect(p.served).toMatchObject({ id: served.after, userId: 7, slot: 'main', modelVersion: 'v2', movieIds: ['after+movie+1', 'after+movie+2'], latencyMs: 12.5 });
    expect(p.model).toMatchObject({
      version: 'v2', source: 'release', specPath: 'models/affinity-v1.json', specHash: v2.hash,
      image: 'marquee-inference:v2', imageDigest: digest, gitCommit: commit,
      release: { id: 'v2', workflowId: 'canary-v2', runId: 'run-v2-0001', phase: 'promoted', decision: 'promote' },
    });
    expect(p.model.specFile).toMatchObject({ exists: true, matches: true });
    // The backup at 2 h is the last before 4 h; the one at 5 h is after the answer.
    expect(p.backup).toMatchObject({ id: backups.b2, file: '/var/backups/b2.dump', deleted: false });
    expect(p.backup.ingestOffsets).toEqual([{ topic: 'movielog', partition: 0, nextOffset: 100 }, { topic: 'movielog', partition: 1, nextOffset: 120 }]);
    expect(p.routing).toMatchObject({ mainVersion: 'v2', nightlyVersion: null, changedBy: 'canary v2: promote' });
    expect(p.routingNote).toBeNull();

    const text = await capture(() => provenanceCommand([String(served.after), '--database', db.name]));
    expect(text.code).toBe(0);
    for (const s of ['model version v2', v2.hash, digest, commit, 'canary-v2', 'run-v2-0001', '/var/backups/b2.dump', 'movielog: p0=100 p1=120', 'promoted, decision promote']) {
      expect(text.out).toContain(s);
    }
  });

  it('names main\'s own version for a main answer during the canary, not the release in flight', async () => {
    const p = await json(String(served.canaryMain));
    expect(p.served).toMatchObject({ slot: 'main', releaseId: 'v2', modelVersion: 'seed-baseline' });
    expect(p.model).toMatchObject({ version: 'seed-baseline', source: 'pre-release', specPath: 'models/seed-baseline.json', specHash: baseline.hash, image: null, gitCommit: null });
    expect(p.model.note).toMatch(/unknown \(pre-release main\)/);
    expect(p.backup.id).toBe(backups.b2);

    const nightly = await json(String(served.canaryNightly));
    expect(nightly.model).toMatchObject({ version: 'v2', source: 'release', imageDigest: digest });
    expect(nightly.routing).toMatchObject({ mainVersion: 'seed-baseline', nightlyVersion: 'v2', nightlyPercent: 10, releaseId: 'v2' });

    const first = await json(String(served.before));
    expect(first.backup).toBeNull();
    const text = await capture(() => provenanceCommand([String(served.before), '--database', db.name]));
    expect(text.out).toMatch(/last backup before it\s+none/);
    expect(text.out).toContain('unknown (pre-release main)');

    const popular = await json(String(served.popular));
    expect(popular.model).toMatchObject({ version: null, source: 'none' });
  });

  it('finds the answer nearest before a time for --user --at', async () => {
    expect((await json('--user', '7', '--at', at(3 * HOUR).toISOString())).served.id).toBe(served.canaryMain);
    expect((await json('--user', '7', '--at', at(4 * HOUR).toISOString())).served.id).toBe(served.after);
    expect((await json('--user', '8', '--at', at(10 * HOUR).toISOString())).served.id).toBe(served.canaryNightly);
    const none = await capture(() => provenanceCommand(['--user', '7', '--at', '2020-01-01T00:00:00Z', '--database', db.name]));
    expect(none.code).toBe(1);
    expect(none.err).toMatch(/no recommendation was served to user 7 at or before 2020-01-01/);
  });

  it('says so for an unknown id and a bad command line', async () => {
    const missing = await capture(() => provenanceCommand(['987654321', '--database', db.name]));
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/no served recommendation with id 987654321/);
    expect((await capture(() => reproduceCommand(['987654321', '--database', db.name]))).code).toBe(1);
    const bad = await capture(() => provenanceCommand(['abc', '--database', db.name]));
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/usage: marquee provenance/);
    expect((await capture(() => provenanceCommand(['--user', '7', '--database', db.name]))).code).toBe(2);
    expect((await capture(() => provenanceCommand([String(served.after), '--user', '7', '--at', '2025-01-01T00:00:00Z', '--database', db.name]))).code).toBe(2);
    const popular = await capture(() => reproduceCommand([String(served.popular), '--database', db.name]));
    expect(popular.code).toBe(1);
    expect(popular.err).toMatch(/popular list.*nothing to rank again/);
  });
});

describe('reproduce', () => {
  const hex = randomBytes(4).toString('hex');
  const topic = `prov_${hex}`;
  const collection = `prov_test_${hex}`;
  const scratch = `marquee_repro_t${hex}`;
  let live: Awaited<ReturnType<typeof scratchDatabase>>;
  let ingest: Ingest | undefined;
  let engine: Engine | undefined;
  let dir: string;
  let admin: Pool;
  let loaded: LoadedSpec;

  beforeAll(async () => {
    const k = cfg.kafka.brokers[0].split(':');
    await requireServer('kafka', Number(k[1]), k[0]);
    const c = new URL(cfg.chroma.url);
    await requireServer('chroma', Number(c.port), c.hostname);
    live = await scratchDatabase('provlive');
    admin = createPool(cfg, { max: 1 });
    dir = mkdtempSync(path.join(os.tmpdir(), 'marquee-prov-'));
    await ensureTopic(cfg, topic);
  });

  afterAll(async () => {
    engine?.stop();
    await ingest?.stop().catch(() => undefined);
    await deleteTopic(cfg, topic);
    await createChromaClient(cfg).deleteCollection({ name: collection }).catch(() => undefined);
    await admin?.query(`DROP DATABASE IF EXISTS "${scratch}" WITH (FORCE)`).catch(() => undefined);
    await admin?.end();
    await live?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('returns the same list as was served for a deterministic model, with and without a backup before it', async () => {
    // Lines whose times put the first 1800 in the past (before the backup taken below) and the
    // rest in the next minutes, so "the last backup before T" is the real one.
    const opts = { seed: 11, count: 3600, movies: 150, users: 120 };
    const timeOf = (l: string) => { const r = parseLine(l); if (!r.ok) throw new Error(r.reason); return r.event.atMs; };
    const probe = generateLines(opts);
    const startMs = Date.now() - (timeOf(probe.lines[1800]) - timeOf(probe.lines[0])) - 30_000;
    const { lines, world } = generateLines({ ...opts, startMs });
    expect(timeOf(lines[0])).toBe(startMs);
    const t0 = timeOf(lines[900]);
    const t1 = timeOf(lines[3000]);
    const a = lines.slice(0, 1800);
    const b = lines.slice(1800);
    const a1 = a.filter((l) => timeOf(l) <= t0);
    const a2 = a.filter((l) => timeOf(l) > t0);
    const b1 = b.filter((l) => timeOf(l) <= t1);
    const b2 = b.filter((l) => timeOf(l) > t1);
    expect(a1.length).toBeGreaterThan(800);
    expect(b1.length).toBeGreaterThan(1000);
    expect(b2.length).toBeGreaterThan(0);

    // Vectors for the world's movies: genres plus a little per-movie noise, popularity from the world.
    const genres = [...new Set(world.movies.flatMap((m) => m.genres))].sort();
    const vector = (m: (typeof world.movies)[number]) => [
      ...genres.map((g) => (m.genres.includes(g) ? 1 : 0)),
      ...[0, 1, 2, 3].map((d) => (hash32(m.index, d) % 1000) / 4000),
    ];
    const chroma = createChromaClient(cfg);
    const col = await chroma.createCollection({ name: collection, embeddingFunction: null, configuration: { hnsw: { space: 'cosine' } } });
    await col.add({ ids: world.movies.map((m) => m.id), embeddings: world.movies.map(vector), metadatas: world.movies.map((m) => ({ popularity: m.popularity })) });

    // The version that serves: affinity-v1's deterministic rule reading the test's vectors, released
    // with its spec stored in the release row (as the canary records it). Its cold start is the
    // popular list: a list of recent watches is refreshed on the inference service's own clock,
    // which no replay can match to the millisecond (see the report of reproduce).
    const spec = JSON.parse(readFileSync(path.join(projectRoot, 'models', 'affinity-v1.json'), 'utf8'));
    Object.assign(spec, { version: 'repro-v1', collection });
    spec.params.coldStart = { kind: 'popular', size: 20 };
    // Simulated sessions are short: count every watch as a (weak) like, so a user's list follows
    // each movie they start instead of falling back to the popular padding.
    spec.params.neutralShare = 0;
    const specFile = path.join(dir, 'repro-v1.json');
    writeFileSync(specFile, JSON.stringify(spec));
    loaded = loadSpec(specFile);
    expect(loaded.path).toBe(specFile);
    await live.pool.query(
      `INSERT INTO releases (id, model_spec, spec, spec_hash, phase, decision) VALUES ('repro-v1', $1, $2, $3, 'promoted', 'promote')`,
      [loaded.path, JSON.stringify(loaded.spec), loaded.hash]);

    ingest = new Ingest(cfg, live.pool, { topic, groupId: `prov-${hex}`, log: () => undefined });
    await ingest.start();
    let produced = 0;
    const feed = async (part: string[]) => {
      produced += await produceLines(cfg, part, { topic });
      await waitForIngested(live.pool, topic, produced);
    };

    engine = new Engine(loaded, live.pool, cfg.chroma.url, { deadlineMs: 20_000, refreshMs: 60_000, fullReloadMs: HOUR, listsRefreshMs: 200 });
    engine.start();
    const ready = async () => {
      for (const started = Date.now(); Date.now() - started < 60_000; await new Promise((r) => setTimeout(r, 100))) {
        const h = engine!.health() as { vectors: { state: string; loadedAt: string | null }; lists: { refreshedAt: string | null } };
        if (h.vectors.state === 'ready' && h.lists.refreshedAt && h.vectors.loadedAt && h.lists.refreshedAt > h.vectors.loadedAt) return;
      }
      throw new Error(`the engine did not get ready: ${JSON.stringify(engine!.health())}`);
    };
    /** What the gateway would have served at `ms` with the data ingested so far, recorded as a served row. */
    const serve = async (user: number, ms: number): Promise<{ id: number; ids: string[] }> => {
      const answer = await engine!.recommend(user, new Date(ms));
      expect(answer.outcome).toBe('model');
      expect(answer.ids.length).toBe(20);
      const { rows } = await live.pool.query(
        `INSERT INTO served_recommendations (served_at, user_id, slot, release_id, model_version, movie_ids, latency_ms)
         VALUES ($1, $2, 'main', NULL, 'repro-v1', $3, 4.2) RETURNING id`, [new Date(ms), user, answer.ids]);
      return { id: Number(rows[0].id), ids: answer.ids };
    };
    /** Users who watched in `part`, those who started the most movies first. */
    const watchers = (part: string[]) => {
      const movies = new Map<number, Set<string>>();
      for (const l of part) {
        const r = parseLine(l);
        if (r.ok && r.event.kind === 'watch') {
          if (!movies.has(r.event.userId)) movies.set(r.event.userId, new Set());
          movies.get(r.event.userId)!.add(r.event.movieId);
        }
      }
      return [...movies].sort((x, y) => y[1].size - x[1].size || x[0] - y[0]).map(([u]) => u);
    };

    // T0: before any backup.
    await feed(a1);
    await ready();
    const user0 = watchers(a1)[0];
    const served0 = await serve(user0, t0);
    await feed(a2);

    const dump = await new MockActivityEnvironment({ workflowExecution: { workflowId: `prov-backup-${hex}`, runId: `run-${hex}-0001` }, scheduledTimestampMs: Date.now() }, quiet)
      .run(dumpDatabase, { database: live.name, dir }) as DumpResult;
    const { id: backupId } = await recordBackup({ database: live.name, path: dump.path, manifest: dump.manifest });
    expect(dump.manifest.ingestOffsets.reduce((n, o) => n + o.nextOffset, 0)).toBe(a.length);
    expect(new Date(dump.manifest.createdAt).getTime()).toBeLessThan(t1);

    // T: after the backup, with lines between the backup and T that only a replay brings back.
    await feed(b1);
    // A user whose answer at T differs from their answer at the backup's time: only the replay of
    // the lines in between can bring their list back.
    const atBackup = new Date(dump.manifest.createdAt);
    let user1: number | undefined;
    for (const u of watchers(b1)) {
      const [then, now] = [await engine.recommend(u, atBackup), await engine.recommend(u, new Date(t1))];
      if (now.outcome === 'model' && then.ids.join() !== now.ids.join()) { user1 = u; break; }
    }
    expect(user1, 'a user whose list the lines after the backup changed').toBeDefined();
    const served1 = await serve(user1!, t1);
    await feed(b2);

    const r1 = await capture(() => reproduceCommand([String(served1.id), '--json', '--database', live.name, '--scratch-db', scratch]));
    expect(r1.code, r1.err + r1.out).toBe(0);
    const j1 = JSON.parse(r1.out);
    expect(j1.backup.id).toBe(backupId);
    expect(j1.replay.topic).toBe(topic); // taken from the backup's offsets
    expect(j1.replay.partitions.reduce((n: number, p: { from: number }) => n + p.from, 0)).toBe(a.length);
    expect(j1.replay.written).toBe(b1.length);
    expect(j1.spec).toMatchObject({ hash: loaded.hash, source: 'release' });
    expect(j1.outcome).toBe('model');
    expect(j1.served).toEqual(served1.ids);
    expect(j1.reproduced).toEqual(served1.ids);
    expect(j1.comparison.match).toBe(true);
    expect((await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [scratch])).rowCount).toBe(0);

    const r0 = await capture(() => reproduceCommand([String(served0.id), '--json', '--database', live.name, '--scratch-db', scratch, '--topic', topic, '--keep']));
    expect(r0.code, r0.err + r0.out).toBe(0);
    const j0 = JSON.parse(r0.out);
    expect(j0.backup).toBeNull();
    expect(j0.noBackup).toMatch(/no backup before/);
    expect(j0.replay.written).toBe(a1.length);
    expect(j0.reproduced).toEqual(served0.ids);
    // --keep leaves the rebuilt data: exactly the lines up to T0.
    expect(j0.kept).toBe(true);
    const kept = createPool(cfg, { database: scratch, max: 1 });
    try {
      const { rows } = await kept.query('SELECT coalesce(sum(next_offset), 0)::int AS n, (SELECT count(*)::int FROM watches WHERE last_at > $1) AS later FROM ingest_offsets', [new Date(t0)]);
      expect(rows[0].later).toBe(0);
      expect(rows[0].n).toBeGreaterThanOrEqual(a1.length);
    } finally {
      await kept.end();
    }

    // The text form shows both lists side by side and the verdict.
    const text = await capture(() => reproduceCommand([String(served1.id), '--database', live.name, '--scratch-db', scratch]));
    expect(text.code, text.err).toBe(0);
    expect(text.out).toContain(`backup ${backupId}`);
    expect(text.out).toMatch(/#\s+served\s+reproduced/);
    expect(text.out).toContain(`  1  ${served1.ids[0]}`);
    expect(text.out).toMatch(/result: MATCH: the same 20 movies in the same order/);
  }, 300_000);
});
