/**
 * The batch writer against a real Postgres: what one statement of unnested column arrays stores
 * must be exactly what the lines said, for text that is awkward to quote (array and SQL literal
 * syntax, backslashes, tabs, newlines, non-ASCII), and a batch already stored is never stored twice.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RawMessage } from '../lib/ingest/batch.ts';
import { KnownIds } from '../lib/ingest/known.ts';
import { parseBatch, writeBatch } from '../lib/ingest/writer.ts';
import { scratchDatabase } from './support/db.ts';

const AWKWARD = `a "quoted", {braced} \\back\\slash\\ 'single' tab\there newline\nhere é ✓ NULL`;

const batchOne: RawMessage[] = [
  { offset: 0, value: '2025-01-02T10:00:00,7,GET /data/m/it\'s+a+film%21+1999/0.mpg' },
  { offset: 1, value: '2025-01-02T10:01:00.123456789,7,GET /data/m/it\'s+a+film%21+1999/2.mpg' },
  { offset: 2, value: '2025-01-02T10:02:00,7,GET /rate/it\'s+a+film%21+1999=2' },
  { offset: 3, value: '2025-01-02T10:03:00,7,GET /rate/it\'s+a+film%21+1999=4' },
  { offset: 4, value: '2025-01-02T09:00:00,7,GET /create_account' },
  { offset: 5, value: '2025-01-02T10:04:00,8,recommendation request host-1:8082, status 200, result: a+b+1990, c.d_e&f:g!+2001, 12 ms' },
  { offset: 6, value: `2025-01-02T10:05:00,8,recommendation request host-1:8082, status 500, result: ${AWKWARD.replace('\n', ' ')}, 30 ms` },
  { offset: 7, value: '2025-01-02T10:06:00,8,recommendation request host-1:8082, status 200, result: , 5 ms' },
  { offset: 8, value: AWKWARD },
  { offset: 9, value: 'bad\u0000line' },
  { offset: 10, value: null },
];
const batchTwo: RawMessage[] = [
  { offset: 11, value: '2025-01-02T09:59:00,7,GET /data/m/it\'s+a+film%21+1999/1.mpg' },
  { offset: 12, value: '2025-01-02T11:00:00,7,GET /data/m/it\'s+a+film%21+1999/40.mpg' },
  { offset: 13, value: '2025-01-02T10:00:00,7,GET /rate/it\'s+a+film%21+1999=1' },
  { offset: 14, value: '2025-01-02T08:00:00,7,GET /create_account' },
];

describe('batch writer on a real Postgres', () => {
  let db: Awaited<ReturnType<typeof scratchDatabase>>;
  beforeAll(async () => { db = await scratchDatabase('ingestwriter'); });
  afterAll(async () => { await db?.drop(); });

  it('stores every kind of row exactly, merges across batches and never writes a batch twice', async () => {
    const client = await db.pool.connect();
    const known = new KnownIds();
    try {
      const one = await writeBatch(client, 't', 3, parseBatch(batchOne), 0, { known });
      expect(one).toMatchObject({ written: 11, skipped: 0, events: 8, deadLetters: 3, nextOffset: 11 });
      expect(one.rows).toEqual({ watches: 1, ratings: 1, accounts: 1, recommendations: 3 });
      // The same batch again (a redelivery): all skipped, nothing written.
      expect(await writeBatch(client, 't', 3, parseBatch(batchOne), 0, { known })).toMatchObject({ written: 0, skipped: 11, nextOffset: 11 });
      // A batch past the stored offset asks for a seek back instead of leaving a gap.
      expect(await writeBatch(client, 't', 3, parseBatch(batchTwo.slice(1)), 0, { known })).toMatchObject({ written: 0, seekTo: 11 });
      // A parsed batch keeps no lines: one that is partly stored is not written in part, the
      // caller is sent to the stored offset to read the fresh part again.
      const straddling = [...batchOne.slice(9), ...batchTwo];
      expect(await writeBatch(client, 't', 3, parseBatch(straddling), 0, { known }))
        .toMatchObject({ written: 0, skipped: 2, seekTo: 11, nextOffset: 11 });
      expect(await writeBatch(client, 't', 3, parseBatch(batchTwo), 0, { known }))
        .toMatchObject({ written: 4, nextOffset: 15 });
    } finally {
      client.release();
    }

    const { rows: watches } = await db.pool.query(
      `SELECT user_id, movie_id, first_at, last_at, seen::text, minutes, max_minute FROM watches`);
    expect(watches).toEqual([{
      user_id: 7, movie_id: "it's+a+film%21+1999",
      first_at: new Date('2025-01-02T09:59:00Z'), last_at: new Date('2025-01-02T11:00:00Z'),
      // Bit i is minute i, padded with zeros to whole hex digits (minuteBits).
      seen: '111' + '0'.repeat(37) + '1' + '000', minutes: 4, max_minute: 40,
    }]);
    const { rows: ratings } = await db.pool.query('SELECT user_id, movie_id, rating, rated_at FROM ratings');
    // 4 at 10:03 stays: the later batch's 1 is older.
    expect(ratings).toEqual([{ user_id: 7, movie_id: "it's+a+film%21+1999", rating: 4, rated_at: new Date('2025-01-02T10:03:00Z') }]);
    const { rows: accounts } = await db.pool.query('SELECT user_id, created_at FROM accounts');
    expect(accounts).toEqual([{ user_id: 7, created_at: new Date('2025-01-02T08:00:00Z') }]);

    const { rows: recs } = await db.pool.query(
      `SELECT kafka_offset::int AS o, at, user_id, server, status, movie_ids, error, latency_ms, topic, kafka_partition
       FROM recommendation_events ORDER BY kafka_offset`);
    expect(recs).toEqual([
      { o: 5, at: new Date('2025-01-02T10:04:00Z'), user_id: 8, server: 'host-1:8082', status: 200, movie_ids: ['a+b+1990', 'c.d_e&f:g!+2001'], error: null, latency_ms: 12, topic: 't', kafka_partition: 3 },
      { o: 6, at: new Date('2025-01-02T10:05:00Z'), user_id: 8, server: 'host-1:8082', status: 500, movie_ids: [], error: AWKWARD.replace('\n', ' '), latency_ms: 30, topic: 't', kafka_partition: 3 },
      { o: 7, at: new Date('2025-01-02T10:06:00Z'), user_id: 8, server: 'host-1:8082', status: 200, movie_ids: [], error: null, latency_ms: 5, topic: 't', kafka_partition: 3 },
    ]);

    const { rows: dead } = await db.pool.query('SELECT kafka_offset::int AS o, line, reason, topic, kafka_partition FROM dead_letters ORDER BY kafka_offset');
    expect(dead.map((d) => [d.o, d.line, d.topic, d.kafka_partition])).toEqual([
      [8, AWKWARD, 't', 3], [9, 'bad\\u0000line', 't', 3], [10, '', 't', 3],
    ]);
    expect(dead.every((d) => d.reason.length > 0)).toBe(true);

    const { rows: movies } = await db.pool.query('SELECT id FROM movies ORDER BY id');
    expect(movies.map((m) => m.id)).toEqual(['a+b+1990', 'c.d_e&f:g!+2001', "it's+a+film%21+1999"]);
    const { rows: users } = await db.pool.query('SELECT id FROM users ORDER BY id');
    expect(users.map((u) => u.id)).toEqual([7, 8]);
    const { rows: [offsets] } = await db.pool.query("SELECT next_offset::int AS n FROM ingest_offsets WHERE topic = 't' AND kafka_partition = 3");
    expect(offsets.n).toBe(15);
  });
});
