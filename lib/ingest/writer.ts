/**
 * The exactly-once batch writer: one Kafka partition batch and its next offset in one Postgres
 * transaction. In lib/ because both the ingest service and provenance replay (lib/provenance)
 * write batches the same way.
 */
import type pg from 'pg';
import { arrayLiteral } from '../copy.ts';
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
  /**
   * Set when the batch does not start at the stored offset: past it (the caller must seek back to
   * it), or before it with part of the batch already stored (nothing is written; the caller reads
   * or writes again from the stored offset).
   */
  seekTo?: number;
}

/**
 * A batch parsed ahead by buildBatch (so that a caller can parse the next batch while Postgres
 * writes this one), holding only its messages' offsets, ascending, and not the lines: a batch
 * lives for about a write's time, and keeping its tens of thousands of line strings that long
 * had them copied into V8's old generation (measured: garbage collection at twice
 * read-and-discard's). A batch that straddles the stored offset is therefore not written in part:
 * the caller seeks to the stored offset and reads its fresh part again.
 */
export interface ParsedBatch {
  offsets: readonly number[];
  built: BatchRows;
}

/** A batch from messages in ascending offset order, for writeBatch. */
export function parseBatch(messages: RawMessage[]): ParsedBatch {
  const offsets = messages.map((m) => m.offset);
  return { offsets, built: buildBatch(messages, offsets) };
}

export interface WriteOptions {
  /** Ids already in movies/users: only the others are inserted. */
  known?: KnownIds;
}

/**
 * All rows of a batch and its next offset in ONE statement: each table's rows arrive as column
 * arrays and are unnested by a data-modifying CTE. Sent with its COMMIT as one simple query (the
 * arrays inlined as literals, since a parameterised query cannot carry a second statement), after
 * the new movie and user ids, `BEGIN` and the offset lock, also one query: a batch costs two
 * round trips whatever it holds.
 * Each round trip waits for Postgres and then for this event loop, which kafkajs' decoding keeps
 * busy; the former COPY-then-upsert per table took about fourteen.
 * Every upsert runs in key order, so that two writers sharing a key wait instead of deadlocking.
 */
const WRITE_ROWS = `
WITH
  w AS (
    INSERT INTO watches AS w (user_id, movie_id, first_at, last_at, seen, minutes, max_minute)
    SELECT u, m, f, l, s, bit_count(s), x
    FROM unnest($3::int[], $4::text[], $5::timestamptz[], $6::timestamptz[], $7::varbit[], $8::int[]) AS t(u, m, f, l, s, x)
    ORDER BY u, m
    ON CONFLICT (user_id, movie_id) DO UPDATE SET
      first_at = LEAST(w.first_at, EXCLUDED.first_at),
      last_at = GREATEST(w.last_at, EXCLUDED.last_at),
      seen = marquee_bit_or(w.seen, EXCLUDED.seen),
      minutes = bit_count(marquee_bit_or(w.seen, EXCLUDED.seen)),
      max_minute = GREATEST(w.max_minute, EXCLUDED.max_minute)),
  r AS (
    -- Latest wins, also against a rating stored by an earlier batch.
    INSERT INTO ratings AS r (user_id, movie_id, rating, rated_at)
    SELECT u, m, v, a FROM unnest($9::int[], $10::text[], $11::smallint[], $12::timestamptz[]) AS t(u, m, v, a)
    ORDER BY u, m
    ON CONFLICT (user_id, movie_id) DO UPDATE SET rating = EXCLUDED.rating, rated_at = EXCLUDED.rated_at
    WHERE EXCLUDED.rated_at >= r.rated_at),
  a AS (
    INSERT INTO accounts AS a (user_id, created_at)
    SELECT u, c FROM unnest($13::int[], $14::timestamptz[]) AS t(u, c)
    ORDER BY u
    ON CONFLICT (user_id) DO UPDATE SET created_at = LEAST(a.created_at, EXCLUDED.created_at)),
  e AS (
    -- movie_ids arrive as one comma-joined text per row (arrays of arrays must not be ragged; a
    -- movie id never holds a comma, see lib/events/slug.ts). The former array literal per row,
    -- escaped again inside the outer one, was 40 % of a batch's SQL text for 1 % of its rows.
    INSERT INTO recommendation_events (at, user_id, server, status, movie_ids, error, latency_ms, topic, kafka_partition, kafka_offset)
    SELECT at, u, srv, st, string_to_array(ids, ','), err, lat, $1, $2, o
    FROM unnest($15::timestamptz[], $16::int[], $17::text[], $18::int[], $19::text[], $20::text[], $21::int[], $22::bigint[]) AS t(at, u, srv, st, ids, err, lat, o)),
  d AS (
    INSERT INTO dead_letters (line, reason, topic, kafka_partition, kafka_offset)
    SELECT ln, rs, $1, $2, o FROM unnest($23::text[], $24::text[], $25::bigint[]) AS t(ln, rs, o))
UPDATE ingest_offsets SET next_offset = $26, updated_at = now() WHERE topic = $1 AND kafka_partition = $2`;

/**
 * The COMMIT does not wait for the WAL flush (the fsync): exactly-once still holds because the
 * partition's next offset is written in the same transaction as its rows, and Postgres' offsets
 * are the truth. A Postgres crash can lose the last few hundred milliseconds of acknowledged
 * commits, but WAL replay restores a prefix of them: a batch's rows and its offset are lost
 * together, never one without the other, and a later batch never survives an earlier one. The
 * offsets already sent to Kafka for the lost batches then lead Postgres', and the consumer
 * (services/ingest/consumer.ts) seeks such partitions back to Postgres' offset, on assignment and
 * whenever a batch starts past it, so the lost lines are read and written again, once.
 * The movie and user markers committed just ahead of a batch may be lost the same way (never
 * while the batch after them survives: a prefix); the consumer
 * forgets the markers it remembers (KnownIds) whenever it finds Postgres behind it (any seek back
 * to Postgres' offset) and on any failed write.
 */
const ASYNC_COMMIT = 'SET LOCAL synchronous_commit = off;';

type Param = string | number | readonly (string | number | null)[];

/**
 * A string literal whatever standard_conforming_strings says (E'' when there is a backslash). Not
 * pg's escapeLiteral: that one walks the text a character at a time, which showed in profiles of
 * batches holding half a megabyte of literals.
 */
function sqlLiteral(text: string): string {
  const quoted = text.replace(/'/g, "''");
  return text.includes('\\') ? ` E'${quoted.replace(/\\/g, '\\\\')}'` : `'${quoted}'`;
}

/** `sql` with each $n replaced by params[n-1] as a literal (the casts stay in the SQL). */
function inline(sql: string, params: Param[]): string {
  return sql.replace(/\$(\d+)/g, (_, n: string) => {
    const v = params[Number(n) - 1];
    if (typeof v === 'number') {
      if (!Number.isSafeInteger(v)) throw new Error(`parameter $${n} is not an integer: ${v}`);
      return String(v);
    }
    return sqlLiteral(typeof v === 'string' ? v : arrayLiteral(v));
  });
}

function rowParams(b: BatchRows, topic: string, partition: number, nextOffset: number): Param[] {
  const w = b.watches;
  const ratings = [...b.ratings.values()];
  const accounts = [...b.accounts.values()];
  const recs = b.recommendations;
  const dead = b.deadLetters;
  return [
    topic, partition,
    w.map((x) => x.userId), w.map((x) => x.movieId), w.map((x) => x.firstIso), w.map((x) => x.lastIso),
    w.map((x) => minuteBits(x.minutes, x.maxMinute)), w.map((x) => x.maxMinute),
    ratings.map((x) => x.userId), ratings.map((x) => x.movieId), ratings.map((x) => x.rating), ratings.map((x) => x.atIso),
    accounts.map((x) => x.userId), accounts.map((x) => x.atIso),
    recs.map((x) => x.atIso), recs.map((x) => x.userId), recs.map((x) => x.server), recs.map((x) => x.status),
    recs.map((x) => x.movieIds.join(',')), recs.map((x) => x.error), recs.map((x) => x.latencyMs), recs.map((x) => x.offset),
    dead.map((x) => x.line), dead.map((x) => x.reason), dead.map((x) => x.offset),
    nextOffset,
  ];
}

/**
 * Writes one partition's batch in ONE transaction together with the partition's next offset.
 * The offset row is locked first, so a second consumer that got the same partition during a
 * rebalance waits, then sees the new offset and skips what was written: never a duplicate.
 */
export async function writeBatch(client: pg.PoolClient, topic: string, partition: number, batch: ParsedBatch, logStart = 0, opts: WriteOptions = {}): Promise<BatchResult> {
  const { offsets, built: b } = batch;
  // Movies and users are only "seen" markers (ON CONFLICT DO NOTHING), so they are committed on
  // their own ahead of the batch's transaction (same round trip): partitions written side by side
  // then wait on each other's new ids for one statement, not for a whole batch. In key order, so
  // that two sharing new ids wait instead of deadlocking.
  const movies = (opts.known ? opts.known.newMovies(b.movies) : [...b.movies]).sort();
  const users = (opts.known ? opts.known.newUsers(b.users) : [...b.users]).sort((x, y) => x - y);
  let seen = '';
  if (movies.length) seen += inline('INSERT INTO movies (id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING;\n', [movies]);
  if (users.length) seen += inline('INSERT INTO users (id) SELECT unnest($1::int[]) ON CONFLICT DO NOTHING;\n', [users]);
  if (seen) seen = `BEGIN;\n${ASYNC_COMMIT}\n${seen}COMMIT;\n`;

  try {
    // Creates the offset row if missing and locks it in one statement: the no-op update takes the
    // row lock (a concurrent writer waits for our commit, then reads the offset we stored).
    const results = await client.query(seen + inline(`BEGIN;
      ${ASYNC_COMMIT}
      INSERT INTO ingest_offsets AS o (topic, kafka_partition, next_offset) VALUES ($1, $2, 0)
      ON CONFLICT (topic, kafka_partition) DO UPDATE SET next_offset = o.next_offset RETURNING next_offset`, [topic, partition])) as unknown as pg.QueryResult<{ next_offset: string }>[];
    opts.known?.remember(movies, users);
    const stored = Number(results[results.length - 1].rows[0].next_offset);
    // Offsets ascend, so the messages already stored are a prefix.
    let skipped = 0;
    while (skipped < offsets.length && offsets[skipped] < stored) skipped++;
    const empty = { watches: 0, ratings: 0, accounts: 0, recommendations: 0 };
    if (skipped === offsets.length) {
      await client.query('ROLLBACK');
      return { written: 0, skipped, events: 0, deadLetters: 0, rows: empty, nextOffset: stored };
    }
    // Kafka handed us messages past what Postgres holds (e.g. after a restore): read the gap first,
    // unless the gap is gone from the log already (retention), where the log's start is the floor.
    // A batch that is partly stored is read again from the stored offset (see ParsedBatch).
    if (skipped > 0 || offsets[0] > Math.max(stored, logStart)) {
      await client.query('ROLLBACK');
      return { written: 0, skipped, events: 0, deadLetters: 0, rows: empty, nextOffset: stored, seekTo: stored };
    }
    const nextOffset = offsets[offsets.length - 1] + 1;
    // An error in the statement skips the COMMIT after it; the catch below rolls back.
    await client.query(inline(WRITE_ROWS, rowParams(b, topic, partition, nextOffset)) + ';\nCOMMIT');
    return {
      written: offsets.length, skipped: 0, events: b.events, deadLetters: b.deadLetters.length, nextOffset,
      rows: { watches: b.watches.length, ratings: b.ratings.size, accounts: b.accounts.size, recommendations: b.recommendations.length },
    };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
