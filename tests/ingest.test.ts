import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../lib/config.ts';
import { databaseUrl } from '../lib/db.ts';
import { ensureTopic, kafkaClient, produceLines, topicOffsets } from '../lib/kafka.ts';
import { IngestThreads } from '../services/ingest/threads.ts';
import { generateLines } from '../services/simulator/offline.ts';
import { scratchDatabase } from './support/db.ts';
import {
  actualRows, deleteTopic, exited, expectedRows, ingestedCount, produceHoldingLast, runIngest, spawnIngest, waitForIngested, withIngest,
} from './support/ingest.ts';
import { requireStack } from './support/servers.ts';
import { ingestThreadBundle } from '../testkit/ingest-bundle.ts';

const cfg = loadConfig();
const N = 100_000;
const { lines, malformed } = generateLines({ seed: 42, count: N, malformedFraction: 0.01 });
const expected = expectedRows(lines);

describe('ingest end to end on real Kafka and Postgres', () => {
  const topic = `ingest-test-${randomBytes(4).toString('hex')}`;
  const topics: string[] = [topic];

  beforeAll(async () => {
    await requireStack(cfg, 'kafka');
    await ensureTopic(cfg, topic, 4);
    expect(await produceLines(cfg, lines, { topic })).toBe(N);
  });
  afterAll(async () => {
    for (const t of topics) await deleteTopic(cfg, t);
  });

  it('the generated input has exactly 1% malformed lines', () => {
    expect(malformed.size).toBe(1000);
    expect(expected.deadLetters).toBe(1000);
    expect(expected.watches).toBeGreaterThan(100);
    expect(expected.ratings).toBeGreaterThan(10);
    expect(expected.recommendations).toBeGreaterThan(10);
  });

  it('100,000 lines with 1% malformed produce exactly the expected rows and dead letters', async () => {
    await withIngest(cfg, 'ingest', topic, async ({ db, ingest }) => {
      await waitForIngested(db.pool, topic, N);
      await ingest.stop();
      expect(await actualRows(db.pool)).toEqual(expected);
      const { rows } = await db.pool.query('SELECT reason, count(*)::int AS n FROM dead_letters GROUP BY reason');
      expect(rows.every((r) => r.reason.length > 0)).toBe(true);
      expect(ingest.deadLetters.get({ partition: 0 }) + ingest.deadLetters.get({ partition: 1 }) + ingest.deadLetters.get({ partition: 2 }) + ingest.deadLetters.get({ partition: 3 })).toBe(1000);
      // A restart with the offsets in Postgres writes nothing twice.
      await runIngest(cfg, db.pool, { topic, groupId: `g2-${db.name}` }, async ({ ingest: again }) => {
        await new Promise((r) => setTimeout(r, 3000));
        await again.stop();
        expect(await actualRows(db.pool)).toEqual(expected);
        expect(again.messages.get({ partition: 0 })).toBe(0);
      });
    });
  });

  it('three consumer threads of one process share the partitions: exactly the expected rows, metrics summed once, pause and resume together', async () => {
    const db = await scratchDatabase('ingestthreads');
    const logs: string[] = [];
    const failures: Error[] = [];
    const threads = new IngestThreads(cfg, { threads: 3, topic, database: db.name, groupId: `g-${db.name}`, log: (l) => logs.push(l), onFailure: (e) => failures.push(e) });
    try {
      await threads.start();
      await waitForIngested(db.pool, topic, N, 120_000, () => failures.length === 0);
      expect(await actualRows(db.pool)).toEqual(expected);
      expect(await threads.health()).toMatchObject({ status: 'ok', paused: false, threads: 3, messages: N });
      const text = await threads.registry.render();
      const sum = (name: string) => [...text.matchAll(new RegExp(`^${name}\\{partition="\\d+"\\} (\\d+)$`, 'gm'))].reduce((s, m) => s + Number(m[1]), 0);
      expect(sum('ingest_messages_total')).toBe(N);
      expect(sum('ingest_dead_letters_total')).toBe(1000);
      // Everything is read: a lag left by a thread that lost its partition would show in the sum.
      expect(sum('ingest_consumer_lag')).toBe(0);
      // The process metrics come once, from the main thread, not once per thread.
      expect(text.match(/^process_cpu_seconds_total /gm)).toHaveLength(1);
      // Each consumer thread's own heap, one series per thread (the process metrics read the main thread's).
      const heaps = [...text.matchAll(/^ingest_thread_heap_used_bytes\{thread="(\d+)"\} (\d+)$/gm)];
      expect(new Set(heaps.map((m) => m[1])).size).toBe(3);
      for (const m of heaps) expect(Number(m[2])).toBeGreaterThan(1_000_000);
      expect(text.match(/^ingest_thread_heap_limit_bytes\{thread="\d+"\} \d+$/gm)).toHaveLength(3);
      expect(text).toMatch(/^# TYPE ingest_thread_gc_seconds_total counter$/m);
      expect(logs.filter((l) => l.includes('consuming'))).toHaveLength(3);
      await threads.pause();
      await threads.drained();
      expect(await threads.health()).toMatchObject({ paused: true });
      await threads.resume();
      expect(await threads.health()).toMatchObject({ status: 'ok', paused: false });
      expect(failures).toEqual([]);
      // A thread that dies is reported (the service then exits for its supervisor to restart it).
      await (threads as unknown as { threads: { worker: { terminate(): Promise<number> } }[] }).threads[1].worker.terminate();
      await new Promise((r) => setTimeout(r, 200));
      expect(failures.map((e) => e.message)).toEqual([expect.stringMatching(/^ingest thread \d+ exited with code 1$/)]);
      await expect(threads.health()).rejects.toThrow(/exited/);
    } finally {
      await threads.stop();
      await db.drop();
    }
  });

  it('consumer threads from the bundle the services image runs, loaded before they start: exactly the expected rows', async () => {
    const db = await scratchDatabase('ingestbundle');
    const threads = new IngestThreads(cfg, { threads: 2, entry: await ingestThreadBundle(), topic, database: db.name, groupId: `g-${db.name}`, log: () => undefined });
    try {
      await threads.load();
      // Loaded, not started: no consumer is in the group yet.
      await new Promise((r) => setTimeout(r, 500));
      const admin = kafkaClient(cfg, 'test-bundle').admin();
      await admin.connect();
      try {
        const { groups } = await admin.describeGroups([`g-${db.name}`]);
        expect(groups[0].members).toEqual([]);
      } finally {
        await admin.disconnect();
      }
      await threads.start();
      await waitForIngested(db.pool, topic, N);
      expect(await actualRows(db.pool)).toEqual(expected);
      expect(await threads.health()).toMatchObject({ status: 'ok', threads: 2, messages: N });
    } finally {
      await threads.stop();
      await db.drop();
    }
  });

  it('consumer threads that cannot start: start() rejects with the reason and leaves no thread running', async () => {
    const failures: Error[] = [];
    const threads = new IngestThreads(cfg, { threads: 2, topic: 'not a valid topic name!', groupId: `g-bad-${randomBytes(4).toString('hex')}`, log: () => undefined, onFailure: (e) => failures.push(e) });
    await expect(threads.start()).rejects.toThrow(/topic/i);
    const workers = (threads as unknown as { threads: { exited: boolean }[] }).threads;
    expect(workers).toHaveLength(2);
    expect(workers.every((t) => t.exited)).toBe(true);
    expect(failures).toEqual([]);
  });

  it('a group the broker refuses for good (a session timeout below its minimum): start() rejects, no thread left running, instead of standing by', async () => {
    // kafkajs reports such a refusal only as a crash event and resolves run() all the same.
    const db = await scratchDatabase('ingestrefused');
    const before = process.env.INGEST_SESSION_TIMEOUT_MS;
    process.env.INGEST_SESSION_TIMEOUT_MS = '4000'; // above the heartbeat (kafkajs checks that), under the broker's group.min.session.timeout.ms, 6 s
    const logs: string[] = [];
    const failures: Error[] = [];
    try {
      const threads = new IngestThreads(cfg, { threads: 2, topic, database: db.name, groupId: `g-${db.name}`, log: (l) => logs.push(l), onFailure: (e) => failures.push(e) });
      const err = await threads.start().then(() => undefined, (e: Error) => e);
      // The broker's reason is the session timeout; the assertion is on what the ingest does with
      // any reason kafkajs will not retry (one run, right after a broker restart, saw another).
      expect(err?.message, `start() should reject; logs: ${logs.join(' | ')}`).toMatch(/^the Kafka consumer stopped and will not restart: ./);
      const workers = (threads as unknown as { threads: { exited: boolean }[] }).threads;
      expect(workers.every((t) => t.exited)).toBe(true);
      expect(logs.filter((l) => l.includes('consuming'))).toEqual([]);
      expect(failures).toEqual([]);
    } finally {
      if (before === undefined) delete process.env.INGEST_SESSION_TIMEOUT_MS;
      else process.env.INGEST_SESSION_TIMEOUT_MS = before;
      await db.drop();
    }
  });

  it("Kafka's committed offsets ahead of Postgres' (commits lost in a Postgres crash): the restart seeks back, no loss, no duplicates", async () => {
    // What an asynchronous commit lost in a Postgres crash leaves behind: the offsets of the last
    // batches reached Kafka, their rows and offsets are gone from Postgres. Made here by moving the
    // group's committed offsets to the end of the log after Postgres has the first half only, so
    // that every partition has nothing left to read at Kafka's offset (the case a batch never shows).
    const lost = `${topic}-lost`;
    topics.push(lost);
    const half = lines.slice(0, 20_000);
    await ensureTopic(cfg, lost, 4);
    await produceLines(cfg, half.slice(0, 10_000), { topic: lost });
    await withIngest(cfg, 'ingestlost', lost, async ({ db, ingest: first, groupId: group }) => {
      await waitForIngested(db.pool, lost, 10_000);
      await first.stop();
      await produceLines(cfg, half.slice(10_000), { topic: lost });
      const admin = kafkaClient(cfg, 'test-admin').admin();
      await admin.connect();
      try {
        const ends = await topicOffsets(admin, lost);
        await admin.setOffsets({ groupId: group, topic: lost, partitions: ends.map((p) => ({ partition: p.partition, offset: p.high })) });
        const [{ partitions }] = await admin.fetchOffsets({ groupId: group, topics: [lost] });
        expect(partitions.reduce((n, p) => n + Number(p.offset), 0)).toBe(20_000);
      } finally {
        await admin.disconnect();
      }
      expect(await ingestedCount(db.pool, lost)).toBe(10_000);

      await runIngest(cfg, db.pool, { topic: lost, groupId: group }, async ({ ingest: again, logged }) => {
        await waitForIngested(db.pool, lost, 20_000, 60_000);
        await again.stop();
        expect(await actualRows(db.pool)).toEqual(expectedRows(half));
        // Only the second half was written again; the partitions were sent back to Postgres' offsets.
        const written = [0, 1, 2, 3].reduce((n, partition) => n + again.messages.get({ partition }), 0);
        expect(written).toBe(10_000);
        expect(logged.some((l) => /Kafka's committed offset was/.test(l))).toBe(true);
      });
    });
  });

  it('Postgres loses acknowledged commits (asynchronous commit, crash): the running ingest finds out, seeks back and writes them again, ids included', async () => {
    await withIngest(cfg, 'ingestlost', topic, async ({ db, ingest }) => {
      await waitForIngested(db.pool, topic, N);
      // What a crash with synchronous_commit off can leave: a prefix of the commits (here the empty
      // one), data and offsets together, while Kafka already has the offsets and the process
      // remembers the movie and user ids as stored. Then the server drops the connections.
      await db.pool.query(`TRUNCATE watches, ratings, accounts, recommendation_events, dead_letters, users, movies;
        UPDATE ingest_offsets SET next_offset = 0 WHERE topic = '${topic}'`);
      const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()) t', [db.name]);
      expect(rows[0].n).toBeGreaterThan(0);
      await waitForIngested(db.pool, topic, N, 60_000);
      await ingest.stop();
      expect(await actualRows(db.pool)).toEqual(expected);
      expect([0, 1, 2, 3].reduce((n, partition) => n + ingest.seeks.get({ partition }), 0)).toBeGreaterThan(0);
    });
  });

  /** A fresh topic fed while the test runs, so a kill at 20 % always lands with lines still to come. */
  async function liveTopic(name: string): Promise<{ topic: string; release: () => void; produced: Promise<number> }> {
    const live = `${topic}-${name}`;
    topics.push(live);
    await ensureTopic(cfg, live, 4);
    let release!: () => void;
    const released = new Promise<void>((r) => { release = r; });
    const produced = produceHoldingLast(cfg, live, lines, released);
    produced.catch(() => undefined);
    return { topic: live, release, produced };
  }

  async function waitUntilIngested(pool: Parameters<typeof ingestedCount>[0], live: string, count: number, alive: () => boolean): Promise<void> {
    const deadline = Date.now() + 60_000;
    while ((await ingestedCount(pool, live)) < count) {
      if (!alive()) throw new Error('an ingest process exited early');
      if (Date.now() > deadline) throw new Error(`ingest did not reach ${count} messages within 60 s`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  // A write fails while writes of its partition are queued behind it: its batch and the queued
  // ones (fetched before the partition's seek back) must not reach Postgres, then all is read again.
  // Cancelled is a failed statement on a live connection; terminated is what a Postgres restart
  // does to the writes in flight (the connection dies mid-transaction).
  for (const [how, kill] of [['cancelled', 'pg_cancel_backend'], ['terminated', 'pg_terminate_backend']] as const) {
    it(`writes ${how} while more are queued: the partitions seek back, the queued batches are dropped, no loss, no duplicates`, async () => {
      const live = await liveTopic(`fail-${how}`);
      try {
        await withIngest(cfg, 'ingestfail', live.topic, async ({ db, ingest, logged }) => {
          // The writes queued per partition are the consumer's own business; the test only reads them to
          // know that the failure lands while batches wait behind the failing write (what it is about).
          const queued = (ingest as unknown as { queued: Map<number, unknown[]> }).queued;
          const sum = (c: typeof ingest.messages): number => [0, 1, 2, 3].reduce((n, partition) => n + c.get({ partition }), 0);
          const blocker = await db.pool.connect();
          try {
            await waitUntilIngested(db.pool, live.topic, N * 0.2, () => true);
            // Holds every write at its first statement on ingest_offsets (SHARE conflicts with the
            // writers' ROW EXCLUSIVE, not with reads) while kafkajs fetches on and queues writes behind
            // them. The producer holds back its last slice, so the partitions have lines to fetch.
            await blocker.query('BEGIN');
            await blocker.query('LOCK TABLE ingest_offsets IN SHARE MODE');
            const blockerPid = (await blocker.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
            const waiting = `FROM pg_stat_activity WHERE datname = $1 AND pid <> $2 AND wait_event_type = 'Lock'`;
            const deadline = Date.now() + 60_000;
            for (;;) {
              const { rows: [{ n }] } = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n ${waiting}`, [db.name, blockerPid]);
              const pending = [...queued.values()].filter((q) => q.length > 0);
              // Settled: every partition with writes in hand has its oldest one waiting on the lock,
              // and at least one partition has another write queued behind it.
              if (n > 0 && n === pending.length && pending.some((q) => q.length >= 2)) break;
              if (Date.now() > deadline) throw new Error(`no write queued behind a blocked one within 60 s (${n} waiting, queues ${pending.map((q) => q.length).join(',')})`);
              await new Promise((r) => setTimeout(r, 20));
            }
            const { rows: [{ failed }] } = await db.pool.query<{ failed: number }>(
              `SELECT count(*) FILTER (WHERE ${kill}(pid))::int AS failed ${waiting}`, [db.name, blockerPid]);
            expect(failed).toBeGreaterThan(0);
            await blocker.query('ROLLBACK');
            expect(await ingestedCount(db.pool, live.topic)).toBeLessThan(N);
            live.release();
            expect(await live.produced).toBe(N);
            await waitForIngested(db.pool, live.topic, N, 120_000);
            await ingest.stop();
            expect(await actualRows(db.pool)).toEqual(expected);
            // Every message written once: the failed batches' rows were rolled back with their offsets.
            expect(sum(ingest.messages)).toBe(N);
            expect(sum(ingest.errors)).toBeGreaterThanOrEqual(failed);
            expect(logged.filter((l) => /failed, will retry/.test(l)).length).toBeGreaterThanOrEqual(failed);
            // Each failed write sent its partition back to the offset stored in Postgres.
            expect(sum(ingest.seeks)).toBeGreaterThanOrEqual(failed);
          } finally {
            blocker.release(true);
          }
        });
      } finally {
        live.release();
      }
    });
  }

  it('SIGKILL in the middle of a run, then a restart: no loss, no duplicates', async () => {
    const db = await scratchDatabase('ingestkill');
    const group = `g-${db.name}`;
    const live = await liveTopic('kill');
    try {
      const first = spawnIngest(databaseUrl(cfg, db.name), live.topic, group);
      try {
        await waitUntilIngested(db.pool, live.topic, N * 0.2, () => first.exitCode === null);
      } catch (e) {
        throw new Error(`${(e as Error).message}:\n${first.output.join('')}`);
      } finally {
        first.kill('SIGKILL');
        await exited(first);
        live.release();
      }
      const atKill = await ingestedCount(db.pool, live.topic);
      expect(atKill).toBeGreaterThan(0);
      expect(atKill).toBeLessThan(N);
      expect(await live.produced).toBe(N);
      const second = spawnIngest(databaseUrl(cfg, db.name), live.topic, group);
      try {
        await waitForIngested(db.pool, live.topic, N, 120_000, () => second.exitCode === null);
      } finally {
        second.kill('SIGTERM');
        expect(await exited(second)).toBe(0);
      }
      expect(await actualRows(db.pool)).toEqual(expected);
    } finally {
      live.release();
      await db.drop();
    }
  });

  it('two ingest processes share the partitions; one is killed: no loss, no duplicates', async () => {
    const db = await scratchDatabase('ingesttwo');
    const group = `g-${db.name}`;
    const live = await liveTopic('two');
    const a = spawnIngest(databaseUrl(cfg, db.name), live.topic, group);
    const b = spawnIngest(databaseUrl(cfg, db.name), live.topic, group);
    try {
      try {
        await waitUntilIngested(db.pool, live.topic, N * 0.3, () => a.exitCode === null && b.exitCode === null);
      } finally {
        a.kill('SIGKILL');
        await exited(a);
        live.release();
      }
      expect(await ingestedCount(db.pool, live.topic)).toBeLessThan(N);
      expect(await live.produced).toBe(N);
      await waitForIngested(db.pool, live.topic, N, 120_000, () => b.exitCode === null);
      expect(await actualRows(db.pool)).toEqual(expected);
    } finally {
      live.release();
      a.kill('SIGKILL');
      b.kill('SIGTERM');
      await exited(b);
      await db.drop();
    }
  });
});
