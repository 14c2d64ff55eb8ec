/**
 * How well each shipped model recommends on real data (MovieLens 100K), as served, beside
 * baselines computed in the same run without any model code.
 *
 * The world is the bench's own, removed at the end (also on failure or Ctrl-C): a Postgres
 * database marquee_mlbench_<tag>, a Kafka topic mlbench-<tag>, ChromaDB collections
 * mlbench_<tag>_<kind>_v<N>; the running stack's data is never read or written. In it:
 *   1. the data set is fetched (`marquee datasets fetch movielens-100k`'s code);
 *   2. imported through the real pipeline: `marquee import movielens`'s code produces the log lines
 *      to the topic, the real ingest service (a child process) writes them to Postgres;
 *   3. vectors are built with `marquee vectors build`'s code, for every collection a spec reads
 *      (movies_<kind>_v<N> in a spec becomes mlbench_<tag>_<kind>_v<N>);
 *   4. the cutoff is the 80th percentile of the rating times; every spec in models/ is served by the
 *      real inference service (a local process on a free port) and asked
 *      GET /recommend/<user>?asOf=<cutoff> for every evaluated user;
 *   5. the baselines read the ratings file itself: most popular before the cutoff, most popular in
 *      the 30 days before it, item-kNN (cosine over co-watches before the cutoff).
 * Users: at least 5 ratings before the cutoff and at least one after. Relevant: the movies a user
 * rated after it (every rating counts as a watch). What a user rated before it is never a
 * candidate. A rating's time, for the split, is the start of the watch session the import writes
 * before it (one minute earlier): that is when Postgres first knows the user saw the movie, so the
 * models' history as of the cutoff and the baselines' "before" are the same set.
 *
 *   npm run bench:movielens [-- --json] [--vectors-at-cutoff]
 *
 * --json prints one JSON object on stdout; progress always goes to stderr. By default the vectors
 * are built after the whole import, as `marquee vectors build` on a live database would (so they
 * know movies and co-watches from after the cutoff); --vectors-at-cutoff imports the ratings
 * before the cutoff (and only the movies rated by then), builds the vectors, then imports the rest,
 * to measure how much that leak is worth.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createChromaClient } from '../lib/chroma.ts';
import { loadConfig, projectRoot, type Config } from '../lib/config.ts';
import { fetchDataset } from '../lib/datasets/fetch.ts';
import { createPool, migrate, type Pool } from '../lib/db.ts';
import { scoreList } from '../lib/eval/offline.ts';
import { num, pct, textTable } from '../lib/eval/table.ts';
import { ensureTopic, kafkaClient } from '../lib/kafka.ts';
import { importMovieLens } from '../lib/movielens/import.ts';
import { readMovieLens } from '../lib/movielens/read.ts';
import { buildVectors } from '../lib/vectors/build.ts';
import type { VectorKind } from '../lib/vectors/store.ts';

const K = 20;
/** Watch minutes the import writes per rating; the split uses the session's start (see above). */
const MINUTES = 1;
/** MovieLens user u is Marquee user u + USER_OFFSET (`import movielens --user-offset`). */
const USER_OFFSET = 100_000;
const MIN_BEFORE = 5;
const CUTOFF_QUANTILE = 0.8;
const RECENT_DAYS = 30;
const DAY_MS = 86_400_000;

let args;
try {
  args = parseArgs({ args: process.argv.slice(2), strict: true, allowPositionals: false, options: { json: { type: 'boolean', default: false }, 'vectors-at-cutoff': { type: 'boolean', default: false } } }).values;
} catch (err) {
  console.error(`bench:movielens: ${(err as Error).message}\nusage: npm run bench:movielens [-- --json] [--vectors-at-cutoff]`);
  process.exit(2);
}
const asJson = args.json;
const vectorsAtCutoff = args['vectors-at-cutoff'];
const progress = (line: string) => console.error(`[bench:movielens ${((performance.now() - t0) / 1000).toFixed(1)} s] ${line}`);
const t0 = performance.now();

// ---- the data as the bench reads it (no model code) ---------------------------------------

interface Rating { user: number; movie: string; at: number }

/**
 * The ratings straight from the atomic .inter file, with each MovieLens movie id turned into the
 * slug the importer gives it (the importer's movie table is the only thing shared with it: it is
 * what makes the baselines' ids and the served ids the same).
 */
function readRatings(dir: string, slugOf: (mlId: number) => string): Rating[] {
  const file = readdirSync(dir).find((n) => n.endsWith('.inter'));
  if (!file) throw new Error(`no .inter file in ${dir}`);
  const lines = readFileSync(path.join(dir, file), 'utf8').split('\n');
  const header = lines[0].split('\t');
  const col = (name: string) => {
    const i = header.indexOf(name);
    if (i < 0) throw new Error(`${file}: no column ${name} in the header`);
    return i;
  };
  const u = col('user_id:token'), m = col('item_id:token'), t = col('timestamp:float');
  const out: Rating[] = [];
  for (let i = 1; i < lines.length; i++) {
    if (lines[i] === '') continue;
    const f = lines[i].split('\t');
    out.push({ user: Number(f[u]) + USER_OFFSET, movie: slugOf(Number(f[m])), at: Number(f[t]) * 1000 - MINUTES * 60_000 });
  }
  return out;
}

interface Split {
  cutoff: number;
  /** Evaluated users, ascending. */
  users: number[];
  before: Map<number, Set<string>>;
  after: Map<number, Set<string>>;
  /** Ratings before the cutoff (all users). */
  past: Rating[];
  catalog: number;
}

function split(ratings: Rating[], catalog: number): Split {
  const times = ratings.map((r) => r.at + MINUTES * 60_000).sort((a, b) => a - b);
  const cutoff = times[Math.floor(CUTOFF_QUANTILE * (times.length - 1))];
  const before = new Map<number, Set<string>>();
  const after = new Map<number, Set<string>>();
  const past: Rating[] = [];
  for (const r of ratings) {
    const side = r.at < cutoff ? before : after;
    if (r.at < cutoff) past.push(r);
    if (!side.has(r.user)) side.set(r.user, new Set());
    side.get(r.user)!.add(r.movie);
  }
  const users = [...before.keys()].filter((u) => before.get(u)!.size >= MIN_BEFORE && (after.get(u)?.size ?? 0) >= 1).sort((a, b) => a - b);
  return { cutoff, users, before, after, past, catalog };
}

// ---- baselines ------------------------------------------------------------------------------

/** Movies by distinct raters, most first; ties by id so the order is the same on every run. */
function byCount(ratings: Iterable<Rating>): string[] {
  const n = new Map<string, number>();
  for (const r of ratings) n.set(r.movie, (n.get(r.movie) ?? 0) + 1);
  return [...n.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([id]) => id);
}

/** The first k of `ranked` the user has not rated, then (when short) of `pad`. */
function topUnseen(ranked: readonly string[], seen: ReadonlySet<string>, pad: readonly string[] = []): string[] {
  const out: string[] = [];
  const taken = new Set<string>();
  for (const list of [ranked, pad]) {
    for (const id of list) {
      if (out.length >= K) return out;
      if (!seen.has(id) && !taken.has(id)) { out.push(id); taken.add(id); }
    }
  }
  return out;
}

/**
 * Item-kNN: cosine between two movies' sets of raters before the cutoff (co-raters over the square
 * root of the product of their rater counts); a candidate's score is the sum of its similarities
 * to the user's movies before the cutoff; the top 20 unseen, padded from popularity if short.
 */
function itemKnn(s: Split, popular: readonly string[]): (user: number) => string[] {
  const ids = [...new Set(s.past.map((r) => r.movie))].sort();
  const index = new Map(ids.map((id, i) => [id, i]));
  const n = ids.length;
  const co = new Float64Array(n * n);
  const count = new Float64Array(n);
  for (const set of s.before.values()) {
    const items = [...set].map((id) => index.get(id)!);
    for (const i of items) {
      count[i]++;
      for (const j of items) if (i !== j) co[i * n + j]++;
    }
  }
  return (user) => {
    const seen = s.before.get(user)!;
    const score = new Float64Array(n);
    for (const id of seen) {
      const i = index.get(id)!;
      for (let j = 0; j < n; j++) if (co[i * n + j] > 0) score[j] += co[i * n + j] / Math.sqrt(count[i] * count[j]);
    }
    const ranked = [...score.keys()].filter((j) => score[j] > 0).sort((a, b) => score[b] - score[a] || (ids[a] < ids[b] ? -1 : 1)).map((j) => ids[j]);
    return topUnseen(ranked, seen, popular);
  };
}

// ---- metrics ------------------------------------------------------------------------------

interface Metrics { ndcg20: number; hit20: number; recall20: number; coverage: number; users: number }
/** Plus the standard error of the mean NDCG@20 over users (text output only: 108 users leave a wide band). */
interface Scored extends Metrics { ndcgSe: number }

/** NDCG@20, hit@20 and recall@20 (hits over |relevant|) as `marquee eval offline` computes them; coverage over the catalog. */
function evaluate(lists: Map<number, readonly string[]>, s: Split): Scored {
  let ndcg = 0, ndcg2 = 0, hit = 0, recall = 0;
  const shown = new Set<string>();
  for (const u of s.users) {
    const ids = lists.get(u) ?? [];
    for (const id of ids.slice(0, K)) shown.add(id);
    const r = scoreList(ids, s.after.get(u)!, K);
    ndcg += r.ndcg;
    ndcg2 += r.ndcg * r.ndcg;
    hit += r.hit ? 1 : 0;
    recall += r.recall;
  }
  const n = s.users.length;
  const variance = n > 1 ? (ndcg2 - (ndcg * ndcg) / n) / (n - 1) : 0;
  return { ndcg20: ndcg / n, hit20: hit / n, recall20: recall / n, coverage: shown.size / s.catalog, users: n, ndcgSe: Math.sqrt(Math.max(0, variance) / n) };
}

// ---- the world ---------------------------------------------------------------------------

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => { const p = (srv.address() as net.AddressInfo).port; srv.close(() => resolve(p)); });
    srv.on('error', reject);
  });
}

function dbUrl(cfg: Config, name: string): string {
  const u = new URL(cfg.postgres.url);
  u.pathname = `/${name}`;
  return u.toString();
}

class World {
  readonly tag = randomBytes(3).toString('hex');
  readonly db = `marquee_mlbench_${this.tag}`;
  readonly topic = `mlbench-${this.tag}`;
  readonly prefix = `mlbench_${this.tag}_`;
  readonly tmp = mkdtempSync(path.join(os.tmpdir(), 'marquee-mlbench-'));
  pool: Pool | null = null;
  private children = new Set<ChildProcess>();
  private made = { db: false, topic: false };
  private closing: Promise<void> | null = null;

  constructor(readonly cfg: Config) {}

  async create(): Promise<Pool> {
    const admin = createPool(this.cfg, { database: 'postgres', max: 1, applicationName: 'bench-movielens' });
    try {
      await admin.query(`CREATE DATABASE "${this.db}"`);
      this.made.db = true;
    } finally {
      await admin.end();
    }
    this.pool = createPool(this.cfg, { database: this.db, max: 6, applicationName: 'bench-movielens' });
    await migrate(this.pool);
    this.made.topic = true;
    await ensureTopic(this.cfg, this.topic);
    return this.pool;
  }

  collectionFor(specCollection: string): { name: string; kind: VectorKind; version: number } {
    const m = /^movies_(content|behaviour)_v(\d+)$/.exec(specCollection);
    if (!m) throw new Error(`a spec reads collection ${specCollection}; the bench only knows how to build movies_<content|behaviour>_v<N>`);
    return { name: `${this.prefix}${m[1]}_v${m[2]}`, kind: m[1] as VectorKind, version: Number(m[2]) };
  }

  spawn(script: string, env: Record<string, string>, label: string): ChildProcess {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(projectRoot, script)], {
      cwd: projectRoot, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    const tail: string[] = [];
    const keep = (c: Buffer) => { tail.push(c.toString()); if (tail.length > 40) tail.shift(); };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    child.once('exit', (code, signal) => {
      this.children.delete(child);
      if (code !== 0 && signal === null && !this.closing) progress(`${label} exited with ${code}: ${tail.join('').trim().split('\n').slice(-5).join(' | ')}`);
    });
    this.children.add(child);
    return child;
  }

  async stop(child: ChildProcess): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    if (await Promise.race([gone.then(() => true), sleep(10_000).then(() => false)])) return;
    child.kill('SIGKILL');
    await gone;
  }

  /** Removes everything the bench made; safe to call twice and after a partial create. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const problems: string[] = [];
      const attempt = async (what: string, fn: () => Promise<unknown>) => { try { await fn(); } catch (err) { problems.push(`${what}: ${(err as Error).message}`); } };
      for (const c of [...this.children]) await attempt('stop a child process', () => this.stop(c));
      await attempt('close the pool', async () => { await this.pool?.end(); });
      if (this.made.topic) {
        await attempt(`delete topic ${this.topic}`, async () => {
          const admin = kafkaClient(this.cfg, 'bench-movielens').admin();
          await admin.connect();
          try { await admin.deleteTopics({ topics: [this.topic] }); } finally { await admin.disconnect(); }
        });
      }
      await attempt('delete the ChromaDB collections', async () => {
        const chroma = createChromaClient(this.cfg);
        for (const c of await chroma.listCollections()) if (c.name.startsWith(this.prefix)) await chroma.deleteCollection({ name: c.name });
      });
      if (this.made.db) {
        await attempt(`drop database ${this.db}`, async () => {
          const admin = createPool(this.cfg, { database: 'postgres', max: 1, applicationName: 'bench-movielens' });
          try { await admin.query(`DROP DATABASE IF EXISTS "${this.db}" WITH (FORCE)`); } finally { await admin.end(); }
        });
      }
      rmSync(this.tmp, { recursive: true, force: true });
      if (problems.length) progress(`cleanup problems (remove by hand): ${problems.join('; ')}`);
      else progress(`removed database ${this.db}, topic ${this.topic} and collections ${this.prefix}*`);
    })();
    return this.closing;
  }
}

async function ingestedCount(pool: Pool, topic: string): Promise<number> {
  const { rows } = await pool.query('SELECT coalesce(sum(next_offset), 0)::bigint AS n FROM ingest_offsets WHERE topic = $1', [topic]);
  return Number(rows[0].n);
}

// ---- serving ------------------------------------------------------------------------------

interface Served { lists: Map<number, string[]>; outcomes: Record<string, number>; ms: number }

async function waitReady(base: string, child: ChildProcess, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < end) {
    if (child.exitCode !== null) throw new Error(`the inference process exited with ${child.exitCode}`);
    const h = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(2000) }).then((r) => (r.ok ? r.json() as Promise<Record<string, unknown>> : null), () => null);
    if (h) {
      const vectors = h.vectors as { state?: string; neighbours?: { state?: string } } | undefined;
      last = `degraded ${String(h.degraded)}, vectors ${vectors?.state}, neighbours ${vectors?.neighbours?.state}`;
      // Ready means: vectors in memory, lists computed and the neighbour lists precomputed, so no
      // answer is a fallback of a slot still warming up.
      if (h.degraded === false && (vectors?.neighbours?.state ?? 'ready') === 'ready') return;
    }
    await sleep(250);
  }
  throw new Error(`inference not ready within ${timeoutMs / 1000} s (${last || 'no answer'})`);
}

/** Every evaluated user's answer from one spec served by a real inference process. */
async function serve(world: World, specFile: string, s: Split): Promise<Served> {
  const port = await freePort();
  const child = world.spawn('services/inference/main.ts', {
    MARQUEE_POSTGRES_URL: dbUrl(world.cfg, world.db),
    INFERENCE_MODEL: specFile,
    INFERENCE_SLOT: 'nightly',
    INFERENCE_PORT: String(port),
    // Generous: the bench scores the model's answers, not the slot's latency (bench:serve does that).
    INFERENCE_DEADLINE_MS: '10000',
  }, `inference ${path.basename(specFile)}`);
  try {
    const base = `http://127.0.0.1:${port}`;
    await waitReady(base, child, 180_000);
    const asOf = new Date(s.cutoff).toISOString();
    const lists = new Map<number, string[]>();
    const outcomes: Record<string, number> = {};
    const started = performance.now();
    let next = 0;
    const worker = async () => {
      while (next < s.users.length) {
        const u = s.users[next++];
        const res = await fetch(`${base}/recommend/${u}?asOf=${encodeURIComponent(asOf)}`, { signal: AbortSignal.timeout(30_000) });
        const body = await res.text();
        if (res.status !== 200) throw new Error(`GET /recommend/${u}?asOf=${asOf}: ${res.status} ${body.slice(0, 200)}`);
        lists.set(u, body === '' ? [] : body.split(','));
        const outcome = String(res.headers.get('x-marquee-outcome') ?? 'unknown');
        outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
      }
    };
    await Promise.all(Array.from({ length: 4 }, worker));
    return { lists, outcomes, ms: performance.now() - started };
  } finally {
    await world.stop(child);
  }
}

// ---- main ---------------------------------------------------------------------------------

interface ModelResult extends Scored { outcomes: Record<string, number>; spec: string; future: { ids: number; lists: number; total: number } }

/**
 * Recommended movies nobody had rated before the cutoff: an answer "as of" the cutoff that holds
 * one was made with knowledge of later (asOf is not time-faithful). Counted per id and per list.
 */
function futureMovies(lists: Map<number, readonly string[]>, s: Split): ModelResult['future'] {
  const known = new Set(s.past.map((r) => r.movie));
  let ids = 0, total = 0, listsWith = 0;
  for (const l of lists.values()) {
    const n = l.slice(0, K).filter((id) => !known.has(id)).length;
    ids += n;
    total += Math.min(K, l.length);
    if (n > 0) listsWith++;
  }
  return { ids, lists: listsWith, total };
}

async function main(): Promise<number> {
  const cfg = loadConfig();
  const world = new World(cfg);
  const onSignal = (sig: string) => { progress(`${sig}: cleaning up`); void world.close().finally(() => process.exit(130)); };
  process.once('SIGINT', () => onSignal('SIGINT'));
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  try {
    const data = fetchDataset('movielens-100k', progress);
    progress(`data set in ${data.dir} (${data.source})`);
    const ml = readMovieLens(data.dir);
    const ratings = readRatings(data.dir, (id) => {
      const m = ml.movies.get(id);
      if (!m) throw new Error(`movie ${id} is rated but not in the item file`);
      return m.slug;
    });
    const s = split(ratings, ml.movies.size);
    const cutoffIso = new Date(s.cutoff).toISOString();
    progress(`cutoff ${cutoffIso} (${CUTOFF_QUANTILE * 100}th percentile of ${ratings.length} rating times); ${s.users.length} users with ≥ ${MIN_BEFORE} ratings before and ≥ 1 after`);

    // Baselines first: they need nothing but the file.
    const popular = byCount(s.past);
    const recent = byCount(s.past.filter((r) => r.at >= s.cutoff - RECENT_DAYS * DAY_MS));
    const knn = itemKnn(s, popular);
    const baselineLists: Record<string, (u: number) => string[]> = {
      'popular-before-cutoff': (u) => topUnseen(popular, s.before.get(u)!),
      [`popular-${RECENT_DAYS}d-before-cutoff`]: (u) => topUnseen(recent, s.before.get(u)!, popular),
      'item-knn-cosine': knn,
    };
    const baselines: Record<string, Scored> = {};
    for (const [name, f] of Object.entries(baselineLists)) baselines[name] = evaluate(new Map(s.users.map((u) => [u, f(u)])), s);
    progress(`baselines scored: ${Object.entries(baselines).map(([n, m]) => `${n} ${num(m.ndcg20, 4)}`).join(', ')}`);

    // The world, and the data through the real pipeline.
    const pool = await world.create();
    progress(`made database ${world.db}, topic ${world.topic}`);
    const ingest = world.spawn('services/ingest/main.ts', {
      MARQUEE_POSTGRES_URL: dbUrl(cfg, world.db), INGEST_TOPIC: world.topic, INGEST_GROUP_ID: `mlbench-${world.tag}`,
      INGEST_PORT: '0', MARQUEE_KAFKA_QUIET: '1',
    }, 'ingest');
    // Every spec in models/, its collection renamed into the bench's world.
    const specFiles = readdirSync(path.join(projectRoot, 'models')).filter((f) => f.endsWith('.json')).sort();
    const specs = specFiles.map((f) => {
      const raw = JSON.parse(readFileSync(path.join(projectRoot, 'models', f), 'utf8')) as { version: string; collection: string };
      const target = world.collectionFor(raw.collection);
      const file = path.join(world.tmp, f);
      writeFileSync(file, JSON.stringify({ ...raw, collection: target.name }, null, 2));
      return { name: f.replace(/\.json$/, ''), file, target };
    });
    // Both kinds always (what a user of the import would build), plus any other a spec reads.
    const targets = new Map(['movies_content_v1', 'movies_behaviour_v1'].map((c) => world.collectionFor(c)).concat(specs.map((x) => x.target)).map((t) => [t.name, t]));
    const buildAll = async () => {
      for (const target of targets.values()) {
        const v = await buildVectors(cfg, pool, { kind: target.kind, version: target.version, collection: target.name });
        progress(`vectors: ${v.collection} ${v.total} movies (dim ${v.dim}) in ${(v.ms / 1000).toFixed(1)} s${Object.keys(v.skipped).length ? `, skipped ${JSON.stringify(v.skipped)}` : ''}`);
      }
    };

    // One import, or (--vectors-at-cutoff) the part before the cutoff, the vectors, then the rest,
    // so that the vectors know only what was known at the cutoff.
    const startOf = (r: { atMs: number }) => r.atMs - MINUTES * 60_000;
    const early = ml.ratings.filter((r) => startOf(r) < s.cutoff);
    const seenEarly = new Set(early.map((r) => r.mlMovieId));
    const stages = vectorsAtCutoff
      ? [
        { ...ml, ratings: early, movies: new Map([...ml.movies].filter(([id]) => seenEarly.has(id))) },
        { ...ml, ratings: ml.ratings.filter((r) => startOf(r) >= s.cutoff) },
      ]
      : [ml];
    let lines = 0;
    for (const [i, stage] of stages.entries()) {
      let shown = 0;
      const report = await importMovieLens(cfg, pool, data.dir, {
        data: stage, topic: world.topic, minutes: MINUTES, userOffset: USER_OFFSET,
        onProgress: ({ produced, total }) => { if (produced - shown >= 50_000 || produced === total) { shown = produced; progress(`produced ${produced} of ${total} lines`); } },
      });
      lines += report.lines;
      for (let n = 0, end = Date.now() + 600_000; ; await sleep(500)) {
        n = await ingestedCount(pool, world.topic);
        if (n >= lines) break;
        if (ingest.exitCode !== null) throw new Error(`ingest exited with ${ingest.exitCode} after ${n} of ${lines} lines`);
        if (Date.now() > end) throw new Error(`ingest wrote ${n} of ${lines} lines in 10 minutes`);
      }
      if (vectorsAtCutoff && i === 0) {
        progress(`ingested the ${report.ratings} ratings before the cutoff; building vectors now`);
        await buildAll();
      }
    }
    await world.stop(ingest);
    const { rows: [c] } = await pool.query(`SELECT (SELECT count(*) FROM ratings)::int AS ratings, (SELECT count(*) FROM watches)::int AS watches,
      (SELECT count(*) FROM dead_letters)::int AS dead, (SELECT count(DISTINCT user_id) FROM ratings)::int AS users`);
    progress(`ingested ${lines} lines: ${c.ratings} ratings, ${c.watches} watches, ${c.users} users, ${c.dead} dead letters`);
    if (c.ratings !== ratings.length || c.dead !== 0) throw new Error(`Postgres holds ${c.ratings} ratings and ${c.dead} dead letters; expected ${ratings.length} and 0`);
    if (!vectorsAtCutoff) await buildAll();

    const models: Record<string, ModelResult> = {};
    for (const spec of specs) {
      progress(`serving ${spec.name} from ${spec.target.name}`);
      const served = await serve(world, spec.file, s).catch((err: Error) => { throw new Error(`serving models/${spec.name}.json: ${err.message}`); });
      models[spec.name] = { ...evaluate(served.lists, s), outcomes: served.outcomes, spec: `models/${spec.name}.json`, future: futureMovies(served.lists, s) };
      progress(`${spec.name}: NDCG@20 ${num(models[spec.name].ndcg20, 4)}; answers ${JSON.stringify(served.outcomes)} in ${(served.ms / 1000).toFixed(1)} s`);
    }

    const strip = (m: Metrics): Metrics => ({ ndcg20: m.ndcg20, hit20: m.hit20, recall20: m.recall20, coverage: m.coverage, users: m.users });
    if (asJson) {
      const plain = (r: Record<string, Metrics>) => Object.fromEntries(Object.entries(r).map(([n, m]) => [n, strip(m)]));
      console.log(JSON.stringify({ baselines: plain(baselines), models: plain(models) }));
    } else {
      const best = Math.max(...Object.values(baselines).map((b) => b.ndcg20));
      const bestName = Object.entries(baselines).find(([, b]) => b.ndcg20 === best)![0];
      const row = (name: string, m: Scored, ratio: string) => [name, num(m.ndcg20, 4), `±${num(m.ndcgSe, 4)}`, pct(m.hit20), num(m.recall20, 4), pct(m.coverage), String(m.users), ratio];
      console.log(`MovieLens 100K through Marquee: cutoff ${cutoffIso} (80th percentile of rating times), ${s.users.length} users (≥ ${MIN_BEFORE} ratings before, ≥ 1 after),`
        + ` ${s.catalog} movies; ${K} per list, what a user rated before the cutoff excluded.`);
      console.log('recall@20 = hits / |relevant| (not capped at 20); coverage = distinct movies in all lists / catalog; s.e. = standard error of the mean NDCG@20 over users.\n');
      console.log(textTable(['list', 'NDCG@20', 's.e.', 'hit@20', 'recall@20', 'coverage', 'users', `× ${bestName} (NDCG)`], [
        ...Object.entries(baselines).map(([n, m]) => row(`baseline ${n}`, m, m.ndcg20 === best ? '1.00' : (m.ndcg20 / best).toFixed(2))),
        ...Object.entries(models).map(([n, m]) => row(`model ${n}`, m, (m.ndcg20 / best).toFixed(2))),
      ]));
      console.log(`\nanswers by X-Marquee-Outcome: ${Object.entries(models).map(([n, m]) => `${n} ${JSON.stringify(m.outcomes)}`).join('; ')}`);
      console.log(`movies first rated at or after the cutoff in the answers for asOf=cutoff: ${Object.entries(models).map(([n, m]) => `${n} ${m.future.ids} of ${m.future.total} ids, in ${m.future.lists} of ${m.users} lists`).join('; ')}`);
      console.log(vectorsAtCutoff
        ? 'vectors were built when Postgres held only the ratings (and movies) from before the cutoff (--vectors-at-cutoff).'
        : `vectors are built from all ${ratings.length} ratings, also those after the cutoff (as \`marquee vectors build\` does on a live database).`);
    }
    progress(`done in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    return 0;
  } finally {
    await world.close();
  }
}

main().then((code) => { process.exitCode = code; }, (err) => {
  console.error(`bench:movielens failed: ${(err as Error).stack ?? err}`);
  process.exitCode = 1;
});
