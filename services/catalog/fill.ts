/**
 * One pass of the catalog: fetch metadata for every movie and user whose `fetched_at` is NULL and
 * whose next try is due, from the info API (`GET <base>/movie/<id>`, `GET <base>/user/<id>`).
 *
 * Requests share one token bucket and a bounded number of workers. A 5xx, 429, timeout or network
 * error is retried a few times with back-off inside the pass; if it keeps failing, or the API says
 * 404, the row records the attempt and the error and gets a next try time (404s wait long), so
 * one bad id never holds up the others, and nothing here ever blocks ingest or serving: those only
 * read metadata when it is there.
 */
import type { Pool } from '../../lib/db.ts';
import type { Counter, Gauge, Histogram, Registry } from '../../lib/metrics.ts';
import { latencyBuckets } from '../../lib/metrics.ts';
import { TokenBucket, sleep } from './ratelimit.ts';

export type Kind = 'movie' | 'user';

export interface FillOptions {
  /** Requests per second to the info API (default 50). Ignored when `limiter` is given. */
  rate?: number;
  burst?: number;
  /** A limiter shared across passes (the service keeps one for its whole life). */
  limiter?: TokenBucket;
  /** Requests in flight at once (default 8). */
  concurrency?: number;
  /** Ids of one kind taken per round (default 200); a round does movies, then users. */
  batchSize?: number;
  /** Per-request timeout (default 5 s). */
  timeoutMs?: number;
  /** Retries of a 5xx/429/timeout/network error within the pass (default 3), back-off from retryBaseMs (default 200 ms). */
  retries?: number;
  retryBaseMs?: number;
  /** When to try a 404 (or another permanent 4xx / unusable answer) again (default 6 h). */
  notFoundRetryMs?: number;
  /** First wait before retrying a row whose transient errors outlasted the pass; doubles per attempt (default 30 s, at most 1 h). */
  errorRetryMs?: number;
  errorRetryMaxMs?: number;
  /** Which tables to fill (default both, movies first). */
  kinds?: Kind[];
  /** Stop after this many ids (default no limit). */
  maxIds?: number;
  signal?: AbortSignal;
  metrics?: CatalogMetrics;
  /** Called after each batch with the movie ids it filled (the service adds their content vectors). */
  onMoviesFetched?: (ids: string[]) => void;
}

export interface FillResult {
  fetched: Record<Kind, number>;
  notFound: Record<Kind, number>;
  failed: Record<Kind, number>;
  /** Rows still without metadata after the pass (including those waiting for a retry). */
  pending: Record<Kind, number>;
  requests: number;
  ms: number;
}

export interface CatalogMetrics {
  fetched: Counter;
  failed: Counter;
  requests: Counter;
  pending: Gauge;
  latency: Histogram;
}

export function catalogMetrics(registry: Registry): CatalogMetrics {
  return {
    fetched: registry.counter('catalog_fetched_total', 'Rows whose metadata the catalog filled, by kind', ['kind']),
    failed: registry.counter('catalog_failed_total', 'Rows whose fetch failed (after in-pass retries), by kind and reason', ['kind', 'reason']),
    requests: registry.counter('catalog_requests_total', 'Requests to the info API, by kind and outcome', ['kind', 'outcome']),
    pending: registry.gauge('catalog_pending', 'Rows still without metadata, by kind', ['kind']),
    latency: registry.histogram('catalog_request_seconds', 'Latency of info API requests', latencyBuckets, ['kind']),
  };
}

interface MovieRow {
  id: string; title: string | null; year: number | null; genres: string[] | null; original_language: string | null;
  popularity: number | null; vote_average: number | null; vote_count: number | null; runtime: number | null; release_date: string | null;
}
interface UserRow { id: number; age: number | null; occupation: string | null; gender: string | null }

type Outcome<T> =
  | { status: 'ok'; row: T }
  | { status: 'notfound' | 'error'; error: string; transient?: boolean };

const num = (v: unknown): number | null => {
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  return typeof n === 'number' && Number.isFinite(n) ? n : null;
};
const int = (v: unknown): number | null => { const n = num(v); return n === null ? null : Math.round(n); };
const str = (v: unknown): string | null => (typeof v === 'string' && v.trim() !== '' ? v.trim() : null);

/** The course's API answered unknown ids with 200 and `{"message": "... not found"}`; treat that like a 404. */
function looksNotFound(body: Record<string, unknown>, key: string): boolean {
  return body[key] === undefined && typeof body.message === 'string';
}

export function parseMovie(id: string, body: unknown): Outcome<MovieRow> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return { status: 'error', error: 'answer is not a JSON object' };
  const b = body as Record<string, unknown>;
  if (looksNotFound(b, 'title')) return { status: 'notfound', error: `not found: ${String(b.message).slice(0, 200)}` };
  const date = typeof b.release_date === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(b.release_date) && !Number.isNaN(Date.parse(b.release_date)) ? b.release_date : null;
  // TMDB's raw shape is [{id, name}]; the simulator serves plain names. Accept both.
  const genres = Array.isArray(b.genres)
    ? b.genres.map((g) => (typeof g === 'string' ? g : g && typeof g === 'object' ? (g as { name?: unknown }).name : null)).filter((g): g is string => typeof g === 'string' && g !== '')
    : null;
  let year = int(b.year);
  if (year === null && date) year = Number(date.slice(0, 4));
  if (year !== null && (year < 1800 || year > 2200)) year = null;
  return {
    status: 'ok',
    row: {
      id, title: str(b.title), year, genres, original_language: str(b.original_language),
      popularity: num(b.popularity), vote_average: num(b.vote_average), vote_count: int(b.vote_count), runtime: int(b.runtime), release_date: date,
    },
  };
}

export function parseUser(id: number, body: unknown): Outcome<UserRow> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return { status: 'error', error: 'answer is not a JSON object' };
  const b = body as Record<string, unknown>;
  if (looksNotFound(b, 'user_id')) return { status: 'notfound', error: `not found: ${String(b.message).slice(0, 200)}` };
  return { status: 'ok', row: { id, age: int(b.age), occupation: str(b.occupation), gender: str(b.gender) } };
}

/** Path-encodes a slug but keeps `+`, which the course's ids use between words. */
export const encodeId = (id: string | number): string => encodeURIComponent(String(id)).replace(/%2B/gi, '+');

class Fetcher {
  requests = 0;
  constructor(private base: string, private limiter: TokenBucket, private o: Required<Pick<FillOptions, 'timeoutMs' | 'retries' | 'retryBaseMs'>> & Pick<FillOptions, 'signal' | 'metrics'>) {}

  async get<T>(kind: Kind, id: string | number, parse: (body: unknown) => Outcome<T>): Promise<Outcome<T>> {
    const url = `${this.base}/${kind}/${encodeId(id)}`;
    let lastError = '';
    for (let attempt = 0; attempt <= this.o.retries; attempt++) {
      if (attempt > 0) await sleep(this.o.retryBaseMs * 2 ** (attempt - 1) * (0.75 + Math.random() / 2), this.o.signal);
      await this.limiter.take(this.o.signal);
      this.requests++;
      const started = performance.now();
      let res: Response;
      let text: string;
      try {
        const signals = [AbortSignal.timeout(this.o.timeoutMs)];
        if (this.o.signal) signals.push(this.o.signal);
        res = await fetch(url, { signal: AbortSignal.any(signals), headers: { accept: 'application/json' } });
        text = await res.text();
      } catch (err) {
        if (this.o.signal?.aborted) throw this.o.signal.reason;
        const e = err as Error;
        lastError = e.name === 'TimeoutError' ? `timeout after ${this.o.timeoutMs} ms` : `request failed: ${e.message}`;
        this.o.metrics?.requests.inc({ kind, outcome: 'network' });
        continue;
      } finally {
        this.o.metrics?.latency.observe({ kind }, (performance.now() - started) / 1000);
      }
      this.o.metrics?.requests.inc({ kind, outcome: String(res.status) });
      if (res.status === 404) return { status: 'notfound', error: `404 ${text.slice(0, 200)}`.trim() };
      if (res.status >= 500 || res.status === 429) { lastError = `HTTP ${res.status} ${text.slice(0, 200)}`.trim(); continue; }
      if (!res.ok) return { status: 'error', error: `HTTP ${res.status} ${text.slice(0, 200)}`.trim() };
      let body: unknown;
      try { body = JSON.parse(text); } catch { return { status: 'error', error: `answer is not JSON: ${text.slice(0, 100)}` }; }
      return parse(body);
    }
    return { status: 'error', error: `${lastError} (after ${this.o.retries + 1} tries)`, transient: true };
  }
}

async function pendingIds(pool: Pool, kind: Kind, limit: number): Promise<(string | number)[]> {
  const table = kind === 'movie' ? 'movies' : 'users';
  const { rows } = await pool.query<{ id: string | number }>(
    `SELECT id FROM ${table} WHERE fetched_at IS NULL AND (next_fetch_at IS NULL OR next_fetch_at <= now())
     ORDER BY first_seen_at, id LIMIT $1`, [limit]);
  return rows.map((r) => r.id);
}

export async function countPending(pool: Pool): Promise<Record<Kind, number>> {
  const { rows } = await pool.query<{ movie: number; user: number }>(
    `SELECT (SELECT count(*) FROM movies WHERE fetched_at IS NULL)::int AS movie, (SELECT count(*) FROM users WHERE fetched_at IS NULL)::int AS user`);
  return rows[0];
}

async function writeMovies(pool: Pool, rows: MovieRow[]): Promise<void> {
  if (!rows.length) return;
  await pool.query(
    `UPDATE movies m SET title = x.title, year = x.year, genres = x.genres, original_language = x.original_language,
       popularity = x.popularity, vote_average = x.vote_average, vote_count = x.vote_count, runtime = x.runtime,
       release_date = x.release_date::date, fetched_at = now(), fetch_attempts = m.fetch_attempts + 1, last_error = NULL, next_fetch_at = NULL
     FROM jsonb_to_recordset($1::jsonb) AS x(id text, title text, year int, genres text[], original_language text, popularity float8,
       vote_average float8, vote_count int, runtime int, release_date text)
     WHERE m.id = x.id`, [JSON.stringify(rows)]);
}

async function writeUsers(pool: Pool, rows: UserRow[]): Promise<void> {
  if (!rows.length) return;
  await pool.query(
    `UPDATE users u SET age = x.age, occupation = x.occupation, gender = x.gender,
       fetched_at = now(), fetch_attempts = u.fetch_attempts + 1, last_error = NULL, next_fetch_at = NULL
     FROM jsonb_to_recordset($1::jsonb) AS x(id int, age int, occupation text, gender text)
     WHERE u.id = x.id`, [JSON.stringify(rows)]);
}

/** Records failed tries; the next try waits base·2^attempts seconds, capped. */
async function writeFailures(pool: Pool, kind: Kind, rows: { id: string | number; error: string; baseMs: number; maxMs: number }[]): Promise<void> {
  if (!rows.length) return;
  const table = kind === 'movie' ? 'movies' : 'users';
  await pool.query(
    `UPDATE ${table} t SET fetch_attempts = t.fetch_attempts + 1, last_error = x.error,
       next_fetch_at = now() + make_interval(secs => least(x.max_ms, x.base_ms * power(2, least(t.fetch_attempts, 30))) / 1000.0)
     FROM jsonb_to_recordset($1::jsonb) AS x(id ${kind === 'movie' ? 'text' : 'int'}, error text, base_ms float8, max_ms float8)
     WHERE t.id = x.id`,
    [JSON.stringify(rows.map((r) => ({ id: r.id, error: r.error, base_ms: r.baseMs, max_ms: r.maxMs })))]);
}

/** Runs `work` over `items` with at most `concurrency` at once. */
async function pooled<T>(items: T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => { while (next < items.length) await work(items[next++]); };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

export async function fillOnce(pool: Pool, apiBase: string, opts: FillOptions = {}): Promise<FillResult> {
  const started = performance.now();
  const base = apiBase.replace(/\/+$/, '');
  const limiter = opts.limiter ?? new TokenBucket(opts.rate ?? 50, opts.burst);
  const fetcher = new Fetcher(base, limiter, {
    timeoutMs: opts.timeoutMs ?? 5000, retries: opts.retries ?? 3, retryBaseMs: opts.retryBaseMs ?? 200, signal: opts.signal, metrics: opts.metrics,
  });
  const concurrency = Math.max(1, opts.concurrency ?? 8);
  const batchSize = Math.max(1, opts.batchSize ?? 200);
  const notFoundMs = opts.notFoundRetryMs ?? 6 * 3_600_000;
  const errorMs = opts.errorRetryMs ?? 30_000;
  const errorMaxMs = Math.max(errorMs, opts.errorRetryMaxMs ?? 3_600_000);
  const kinds = opts.kinds ?? ['movie', 'user'];
  const zero = (): Record<Kind, number> => ({ movie: 0, user: 0 });
  const result: FillResult = { fetched: zero(), notFound: zero(), failed: zero(), pending: zero(), requests: 0, ms: 0 };
  let budget = opts.maxIds ?? Infinity;
  const done = new Set<Kind>();

  while (done.size < kinds.length && budget > 0) {
    for (const kind of kinds) {
      if (done.has(kind) || budget <= 0) continue;
      opts.signal?.throwIfAborted();
      const ids = await pendingIds(pool, kind, Math.min(batchSize, budget));
      if (ids.length === 0) { done.add(kind); continue; }
      budget -= ids.length;
      const movies: MovieRow[] = [];
      const users: UserRow[] = [];
      const failures: { id: string | number; error: string; baseMs: number; maxMs: number }[] = [];
      await pooled(ids, concurrency, async (id) => {
        const out = kind === 'movie'
          ? await fetcher.get(kind, id, (b) => parseMovie(String(id), b))
          : await fetcher.get(kind, id, (b) => parseUser(Number(id), b));
        if (out.status === 'ok') {
          if (kind === 'movie') movies.push(out.row as MovieRow); else users.push(out.row as UserRow);
          return;
        }
        const transient = out.transient === true;
        if (out.status === 'notfound') result.notFound[kind]++; else result.failed[kind]++;
        opts.metrics?.failed.inc({ kind, reason: out.status === 'notfound' ? 'not_found' : transient ? 'transient' : 'bad_answer' });
        failures.push({ id, error: out.error, baseMs: transient ? errorMs : notFoundMs, maxMs: transient ? errorMaxMs : Math.max(notFoundMs, 7 * 86_400_000) });
      });
      await writeMovies(pool, movies);
      await writeUsers(pool, users);
      await writeFailures(pool, kind, failures);
      result.fetched[kind] += movies.length + users.length;
      opts.metrics?.fetched.inc({ kind }, movies.length + users.length);
      if (movies.length) opts.onMoviesFetched?.(movies.map((m) => m.id));
    }
  }
  result.pending = await countPending(pool);
  for (const k of ['movie', 'user'] as const) opts.metrics?.pending.set({ kind: k }, result.pending[k]);
  result.requests = fetcher.requests;
  result.ms = Math.round(performance.now() - started);
  return result;
}
