/**
 * Provenance replay on real Kafka and Postgres where the database already holds the start of the
 * replayed range (its ingest_offsets ahead of `from`): the writer writes no batch in part, so the
 * replay must write the rest of such a batch itself, each message once.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../lib/config.ts';
import { ensureTopic, produceLines } from '../lib/kafka.ts';
import { replayUntil } from '../lib/provenance/replay.ts';
import { scratchDatabase } from './support/db.ts';
import { deleteTopic } from './support/ingest.ts';
import { requireServer } from './support/servers.ts';

const cfg = loadConfig();

describe('provenance replay into a database ahead of its start', () => {
  const topic = `provreplay_${randomBytes(4).toString('hex')}`;
  let db: Awaited<ReturnType<typeof scratchDatabase>>;

  beforeAll(async () => {
    const [host, port] = cfg.kafka.brokers[0].split(':');
    await requireServer('kafka', Number(port), host);
    db = await scratchDatabase('provreplay');
    await ensureTopic(cfg, topic, 1);
  });

  afterAll(async () => {
    await deleteTopic(cfg, topic);
    await db?.drop();
  });

  it('writes only the messages past the stored offset, once', async () => {
    // Even offsets are watches (user 100 + offset), odd ones are dead letters; one produce, so
    // the replay reads them as one batch that straddles the stored offset 4.
    const lines = Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? `2025-01-02T10:0${i}:00,${100 + i},GET /data/m/film+${i}/0.mpg` : `garbage ${i}`));
    expect(await produceLines(cfg, lines, { topic, keyOf: () => null })).toBe(10);
    await db.pool.query('INSERT INTO ingest_offsets (topic, kafka_partition, next_offset) VALUES ($1, 0, 4)', [topic]);

    const r = await replayUntil(cfg, db.pool, { topic, from: new Map(), until: new Date('2025-01-03T00:00:00Z'), timeoutMs: 60_000 });
    expect(r.partitions).toEqual([expect.objectContaining({ partition: 0, from: 0, readTo: 10, written: 6, later: 0, stoppedBy: 'end of log' })]);

    const { rows: watches } = await db.pool.query<{ user_id: number }>('SELECT user_id FROM watches ORDER BY user_id');
    expect(watches.map((w) => w.user_id)).toEqual([104, 106, 108]);
    const { rows: dead } = await db.pool.query<{ o: number }>('SELECT kafka_offset::int AS o FROM dead_letters ORDER BY kafka_offset');
    expect(dead.map((d) => d.o)).toEqual([5, 7, 9]);
    const { rows: [offset] } = await db.pool.query<{ n: number }>('SELECT next_offset::int AS n FROM ingest_offsets WHERE topic = $1 AND kafka_partition = 0', [topic]);
    expect(offset.n).toBe(10);
  }, 120_000);
});
