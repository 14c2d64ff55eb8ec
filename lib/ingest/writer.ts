/**
 * The exactly-once batch writer: one Kafka partition batch and its next offset in one Postgres
 * transaction. In lib/ because both the ingest service and provenance replay (lib/provenance)
 * write batches the same way.
 */
import type pg from 'pg';
import { copyRows, textArrayLiteral } from '../copy.ts';
import { buildBatch, minuteBits, type BatchRows, type RawMessage } from './batch.ts';
import type { KnownIds } from './known.ts';

export interface BatchResult {
  /** Messages written now (those below the stored offset were already in Postgres and skipped). */
  written: number;
  skipped: number;
  events: number;
  deadLetters: number;
  rows: { watches: number; ratings: number; accounts: number; recommendations: number };
  /** The stored next offset after this batch. */
  nextOffset: number;
  /** Set when the batch starts past the stored offset: the caller must seek back to it. */
  seekTo?: number;
}

export interface WriteOptions {
  /**
   * `messages` already parsed by buildBatch, so that a caller can parse the next batch while
   * Postgres writes this one. Used only when no message is skipped; else the fresh ones are parsed.
   */
  built?: BatchRows;
  /** Ids already in movies/users: only the others are inserted. */
  known?: KnownIds;
}

const prepared = new WeakSet<object>();

/** Staging tables live per connection and empty themselves at commit. */
async function ensureStaging(client: pg.PoolClient): Promise<void> {
  if (prepared.has(client)) return;
  await client.query(`
    CREATE TEMP TABLE IF NOT EXISTS stage_watches (user_id int, movie_id text, first_at timestamptz, last_at timestamptz, seen varbit, max_minute int) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE IF NOT EXISTS stage_ratings (user_id int, movie_id text, rating smallint, rated_at timestamptz) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE IF NOT EXISTS stage_accounts (user_id int, created_at timestamptz) ON COMMIT DELETE ROWS;
  `);
  prepared.add(client);
}

/**
 * Writes one partition's batch in ONE transaction together with the partition's next offset.
 * The offset row is locked first, so a second consumer that got the same partition during a
 * rebalance waits, then sees the new offset and skips what was written: never a duplicate.
 */
export async function writeBatch(client: pg.PoolClient, topic: string, partition: number, messages: RawMessage[], logStart = 0, opts: WriteOptions = {}): Promise<BatchResult> {
  await ensureStaging(client);
  await client.query('BEGIN');
  try {
    // Creates the row if missing and locks it in one statement: the no-op update takes the row lock
    // (a concurrent writer waits for our commit, then reads the offset we stored).
    const { rows: [row] } = await client.query<{ next_offset: number }>(
      `INSERT INTO ingest_offsets AS o (topic, kafka_partition, next_offset) VALUES ($1, $2, 0)
       ON CONFLICT (topic, kafka_partition) DO UPDATE SET next_offset = o.next_offset RETURNING next_offset`, [topic, partition]);
    const stored = Number(row.next_offset);
    const fresh = messages.filter((m) => m.offset >= stored);
    const skipped = messages.length - fresh.length;
    const empty = { watches: 0, ratings: 0, accounts: 0, recommendations: 0 };
    if (fresh.length === 0) {
      await client.query('ROLLBACK');
      return { written: 0, skipped, events: 0, deadLetters: 0, rows: empty, nextOffset: stored };
    }
    // Kafka handed us messages past what Postgres holds (e.g. after a restore): read the gap first,
    // unless the gap is gone from the log already (retention), where the log's start is the floor.
    if (fresh[0].offset > Math.max(stored, logStart)) {
      await client.query('ROLLBACK');
      return { written: 0, skipped, events: 0, deadLetters: 0, rows: empty, nextOffset: stored, seekTo: stored };
    }
    const b = opts.built && fresh.length === messages.length ? opts.built : buildBatch(fresh);

    // Every upsert goes in key order: partitions written side by side then take row locks in the same
    // order, so two that share new movie ids wait for each other instead of deadlocking.
    const movies = (opts.known ? opts.known.newMovies(b.movies) : [...b.movies]).sort();
    const users = (opts.known ? opts.known.newUsers(b.users) : [...b.users]).sort((x, y) => x - y);
    if (movies.length) await client.query('INSERT INTO movies (id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING', [movies]);
    if (users.length) await client.query('INSERT INTO users (id) SELECT unnest($1::int[]) ON CONFLICT DO NOTHING', [users]);

    if (b.watches.length) {
      await copyRows(client, 'stage_watches', ['user_id', 'movie_id', 'first_at', 'last_at', 'seen', 'max_minute'],
        b.watches.map((w) => [w.userId, w.movieId, w.firstIso, w.lastIso, minuteBits(w.minutes, w.maxMinute), w.maxMinute]));
      await client.query(`
        INSERT INTO watches AS w (user_id, movie_id, first_at, last_at, seen, minutes, max_minute)
        SELECT user_id, movie_id, first_at, last_at, seen, bit_count(seen), max_minute FROM stage_watches ORDER BY user_id, movie_id
        ON CONFLICT (user_id, movie_id) DO UPDATE SET
          first_at = LEAST(w.first_at, EXCLUDED.first_at),
          last_at = GREATEST(w.last_at, EXCLUDED.last_at),
          seen = marquee_bit_or(w.seen, EXCLUDED.seen),
          minutes = bit_count(marquee_bit_or(w.seen, EXCLUDED.seen)),
          max_minute = GREATEST(w.max_minute, EXCLUDED.max_minute)`);
    }
    if (b.ratings.size) {
      await copyRows(client, 'stage_ratings', ['user_id', 'movie_id', 'rating', 'rated_at'],
        [...b.ratings.values()].map((r) => [r.userId, r.movieId, r.rating, r.atIso]));
      // Latest wins, also against a rating stored by an earlier batch.
      await client.query(`
        INSERT INTO ratings AS r (user_id, movie_id, rating, rated_at) SELECT user_id, movie_id, rating, rated_at FROM stage_ratings ORDER BY user_id, movie_id
        ON CONFLICT (user_id, movie_id) DO UPDATE SET rating = EXCLUDED.rating, rated_at = EXCLUDED.rated_at
        WHERE EXCLUDED.rated_at >= r.rated_at`);
    }
    if (b.accounts.size) {
      await copyRows(client, 'stage_accounts', ['user_id', 'created_at'], [...b.accounts.values()].map((a) => [a.userId, a.atIso]));
      await client.query(`
        INSERT INTO accounts AS a (user_id, created_at) SELECT user_id, created_at FROM stage_accounts ORDER BY user_id
        ON CONFLICT (user_id) DO UPDATE SET created_at = LEAST(a.created_at, EXCLUDED.created_at)`);
    }
    await copyRows(client, 'recommendation_events',
      ['at', 'user_id', 'server', 'status', 'movie_ids', 'error', 'latency_ms', 'topic', 'kafka_partition', 'kafka_offset'],
      b.recommendations.map((r) => [r.atIso, r.userId, r.server, r.status, textArrayLiteral(r.movieIds), r.error, r.latencyMs, topic, partition, r.offset]));
    await copyRows(client, 'dead_letters', ['line', 'reason', 'topic', 'kafka_partition', 'kafka_offset'],
      b.deadLetters.map((d) => [d.line, d.reason, topic, partition, d.offset]));

    const nextOffset = fresh[fresh.length - 1].offset + 1;
    await client.query('UPDATE ingest_offsets SET next_offset = $3, updated_at = now() WHERE topic = $1 AND kafka_partition = $2', [topic, partition, nextOffset]);
    await client.query('COMMIT');
    opts.known?.remember(movies, users);
    return {
      written: fresh.length, skipped, events: b.events, deadLetters: b.deadLetters.length, nextOffset,
      rows: { watches: b.watches.length, ratings: b.ratings.size, accounts: b.accounts.size, recommendations: b.recommendations.length },
    };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
