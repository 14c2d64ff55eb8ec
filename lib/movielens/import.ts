/**
 * `marquee import movielens <dir>`: the ratings of a MovieLens download produced to Kafka as
 * course log lines (ingest then stores them like any other activity), and the download's own
 * movie and user metadata written to Postgres, since no info API knows these movies (the content
 * vectors need their genres and years). Metadata rows are upserts and lines go through the
 * idempotent producer, so a re-run adds no metadata twice; it does produce the lines again.
 */
import type { Config } from '../config.ts';
import type { Pool } from '../db.ts';
import { produceLines } from '../kafka.ts';
import { lineCount, movieLensLines, type LineOptions } from './lines.ts';
import { readMovieLens, type MovieLensData } from './read.ts';

export interface ImportOptions extends LineOptions {
  /** Defaults to cfg.kafka.topic. */
  topic?: string;
  /** Lines per produce call. */
  chunkLines?: number;
  onProgress?: (p: { produced: number; total: number }) => void;
  /** The download already read (readMovieLens(dir)), so a caller can refuse a bad one before making anything. */
  data?: MovieLensData;
}

export interface ImportReport {
  layout: MovieLensData['layout'];
  movies: number;
  users: number;
  ratings: number;
  lines: number;
  files: MovieLensData['files'];
  firstRating: string | null;
  lastRating: string | null;
  ms: number;
}

/** Upserts the movies (title, year, genres) and users (age, gender, occupation), marked as fetched. */
export async function writeMetadata(pool: Pool, data: MovieLensData, userOffset = 0): Promise<void> {
  const movies = [...data.movies.values()];
  await pool.query(`INSERT INTO movies (id, title, year, genres, fetched_at)
    SELECT x.id, x.title, x.year, ARRAY(SELECT jsonb_array_elements_text(x.genres)), now()
    FROM jsonb_to_recordset($1::jsonb) AS x(id text, title text, year int, genres jsonb)
    ON CONFLICT (id) DO UPDATE SET title = excluded.title, year = excluded.year, genres = excluded.genres,
      fetched_at = coalesce(movies.fetched_at, excluded.fetched_at)`,
  [JSON.stringify(movies.map((m) => ({ id: m.slug, title: m.title, year: m.year, genres: m.genres })))]);
  const users = [...data.users.values()];
  if (users.length) {
    await pool.query(`INSERT INTO users (id, age, gender, occupation, fetched_at)
      SELECT x.id, x.age, x.gender, x.occupation, now() FROM jsonb_to_recordset($1::jsonb) AS x(id int, age int, gender text, occupation text)
      ON CONFLICT (id) DO UPDATE SET age = excluded.age, gender = excluded.gender, occupation = excluded.occupation,
        fetched_at = coalesce(users.fetched_at, excluded.fetched_at)`,
    [JSON.stringify(users.map((u) => ({ id: u.id + userOffset, age: u.age, gender: u.gender, occupation: u.occupation })))]);
  }
}

export async function importMovieLens(cfg: Config, pool: Pool | null, dir: string, opts: ImportOptions = {}): Promise<ImportReport> {
  const started = performance.now();
  const data = opts.data ?? readMovieLens(dir);
  if (pool) await writeMetadata(pool, data, opts.userOffset ?? 0);
  const total = lineCount(data, opts);
  const chunk = opts.chunkLines ?? 100_000;
  let produced = 0;
  let batch: string[] = [];
  const flush = async () => {
    if (batch.length === 0) return;
    const base = produced;
    await produceLines(cfg, batch, { topic: opts.topic, onProgress: (n) => opts.onProgress?.({ produced: base + n, total }) });
    produced += batch.length;
    batch = [];
  };
  for (const line of movieLensLines(data, opts)) {
    batch.push(line);
    if (batch.length >= chunk) await flush();
  }
  await flush();
  const r = data.ratings;
  return {
    layout: data.layout,
    movies: data.movies.size,
    users: new Set(r.map((x) => x.userId)).size,
    ratings: r.length,
    lines: produced,
    files: data.files,
    firstRating: r.length ? new Date(r[0].atMs).toISOString() : null,
    lastRating: r.length ? new Date(r[r.length - 1].atMs).toISOString() : null,
    ms: Math.round(performance.now() - started),
  };
}
