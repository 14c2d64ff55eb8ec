/**
 * The vector job: computes one vector per movie and upserts it into `movies_<kind>_v<version>`.
 *
 * A full build writes a staging collection and swaps it in at the end, so readers keep the old
 * vectors while it runs. An incremental run only adds movies that are not in the collection yet
 * (content: from their metadata; behaviour: folded in from their watchers), leaving every
 * existing record as it is; it falls back to a full build when the collection does not exist.
 * Builds of the same collection are serialised by a Postgres advisory lock.
 */
import type { ChromaClient, Collection, Metadata } from 'chromadb';
import { createChromaClient } from '../chroma.ts';
import type { Config } from '../config.ts';
import type { Pool } from '../db.ts';
import { factorize, foldIn, loadWatchMatrix } from './behaviour.ts';
import { CONTENT_DIM, contentMetadata, contentVector, movieYear, type MovieMeta } from './content.ts';
import { collectionName, createVectorCollection, getCollectionOrNull, readCollection, swapIn, upsertRecords, type VectorKind, type CollectionRecord } from './store.ts';

export interface BuildOptions {
  kind: VectorKind;
  version?: number;
  incremental?: boolean;
  /** Overrides movies_<kind>_v<version> (tests use unique names). */
  collection?: string;
  /** Behaviour only: dimension (default 32), movies need this many watchers (default 5), power iterations (default 5). */
  dim?: number;
  minWatches?: number;
  iterations?: number;
  seed?: number;
  /** Behaviour fold-in: watchers used per new movie (default 2000). */
  maxWatchers?: number;
  chroma?: ChromaClient;
  log?: (line: string) => void;
}

export interface BuildReport {
  collection: string;
  kind: VectorKind;
  mode: 'full' | 'incremental';
  /** Records written by this run. */
  upserted: number;
  /** Records in the collection afterwards. */
  total: number;
  dim: number;
  /** Movies left without a vector, by reason, with a few example ids. */
  skipped: Record<string, number>;
  skippedSample: string[];
  ms: number;
  phases: Record<string, number>;
}

interface MovieRow extends MovieMeta { fetched: boolean }

const MOVIE_COLUMNS = 'id, year, genres, original_language, popularity, vote_average, vote_count, release_date, fetched_at IS NOT NULL AS fetched';

async function withLock<T>(pool: Pool, name: string, fn: () => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('SELECT pg_advisory_lock(7242100, hashtext($1))', [name]);
    try {
      return await fn();
    } finally {
      await client.query('SELECT pg_advisory_unlock(7242100, hashtext($1))', [name]).catch(() => undefined);
    }
  } finally {
    client.release();
  }
}

export async function buildVectors(cfg: Config, pool: Pool, opts: BuildOptions): Promise<BuildReport> {
  if (opts.kind !== 'content' && opts.kind !== 'behaviour') throw new Error(`unknown vector kind "${String(opts.kind)}": expected content or behaviour`);
  const version = opts.version ?? 1;
  if (!Number.isInteger(version) || version < 1) throw new Error(`bad vector version ${version}: expected a positive integer`);
  const name = opts.collection ?? collectionName(opts.kind, version);
  const client = opts.chroma ?? createChromaClient(cfg);
  const started = performance.now();
  return withLock(pool, name, async () => {
    const existing = opts.incremental ? await getCollectionOrNull(client, name) : null;
    const run = new Run(client, pool, name, version, opts);
    const report = existing ? await run.incremental(existing) : await run.full();
    report.ms = Math.round(performance.now() - started);
    return report;
  });
}

class Run {
  phases: Record<string, number> = {};
  private t = performance.now();
  constructor(private client: ChromaClient, private pool: Pool, private name: string, private version: number, private opts: BuildOptions) {}

  private lap(phase: string): void {
    const now = performance.now();
    this.phases[phase] = Math.round(now - this.t);
    this.t = now;
    this.opts.log?.(`${phase}: ${this.phases[phase]} ms`);
  }

  private report(mode: 'full' | 'incremental', upserted: number, total: number, dim: number, skipped: Record<string, number>, sample: string[]): BuildReport {
    return { collection: this.name, kind: this.opts.kind, mode, upserted, total, dim, skipped, skippedSample: sample.slice(0, 10), ms: 0, phases: this.phases };
  }

  async full(): Promise<BuildReport> {
    const built = this.opts.kind === 'content' ? await this.contentRecords(null) : await this.behaviourRecords();
    const staging = `${this.name}-build-${Date.now()}`;
    const collection = await createVectorCollection(this.client, staging, built.metadata);
    try {
      await upsertRecords(collection, built.records);
      this.lap('upsert');
      await swapIn(this.client, collection, this.name, built.metadata);
      this.lap('swap');
    } catch (err) {
      await this.client.deleteCollection({ name: staging }).catch(() => undefined);
      throw err;
    }
    return this.report('full', built.records.length, built.records.length, built.dim, built.skipped, built.sample);
  }

  async incremental(collection: Collection): Promise<BuildReport> {
    const meta = collection.metadata ?? {};
    if (meta.kind !== undefined && meta.kind !== this.opts.kind) throw new Error(`collection ${this.name} holds ${String(meta.kind)} vectors, not ${this.opts.kind}`);
    let built: { records: CollectionRecord[]; dim: number; skipped: Record<string, number>; sample: string[] };
    if (this.opts.kind === 'content') {
      if (meta.dim !== undefined && meta.dim !== CONTENT_DIM) throw new Error(`collection ${this.name} has dimension ${String(meta.dim)} but content vectors now have ${CONTENT_DIM}; run a full build into a new version`);
      const have = new Set((await readCollection(collection)).ids);
      this.lap('read collection');
      built = await this.contentRecords(have);
    } else {
      built = await this.behaviourFoldIn(collection);
    }
    await upsertRecords(collection, built.records);
    this.lap('upsert');
    const total = await collection.count();
    return this.report('incremental', built.records.length, total, built.dim, built.skipped, built.sample);
  }

  private collectionMetadata(dim: number, extra: Metadata = {}): Metadata {
    return { kind: this.opts.kind, version: this.version, dim, built_at: new Date().toISOString(), ...extra };
  }

  private async contentRecords(have: Set<string> | null): Promise<{ records: CollectionRecord[]; dim: number; skipped: Record<string, number>; sample: string[]; metadata: Metadata }> {
    const { rows } = await this.pool.query<MovieRow>(`SELECT ${MOVIE_COLUMNS} FROM movies ORDER BY id`);
    this.lap('read movies');
    const records: CollectionRecord[] = [];
    const sample: string[] = [];
    let pending = 0;
    for (const m of rows) {
      if (have?.has(m.id)) continue;
      // Without metadata a content vector would say nothing; the catalog fills it, and the next incremental run adds it.
      if (!m.fetched) { pending++; if (sample.length < 10) sample.push(m.id); continue; }
      records.push({ id: m.id, embedding: contentVector(m), metadata: contentMetadata(m) });
    }
    this.lap('compute');
    return { records, dim: CONTENT_DIM, skipped: pending ? { no_metadata_yet: pending } : {}, sample, metadata: this.collectionMetadata(CONTENT_DIM) };
  }

  private async movieFacts(ids: string[]): Promise<Map<string, { popularity: number; year: number }>> {
    const { rows } = await this.pool.query<MovieRow>(`SELECT ${MOVIE_COLUMNS} FROM movies WHERE id = ANY($1::text[])`, [ids]);
    return new Map(rows.map((m) => [m.id, { popularity: m.popularity ?? 0, year: movieYear(m) ?? -1 }]));
  }

  private async behaviourRecords(): Promise<{ records: CollectionRecord[]; dim: number; skipped: Record<string, number>; sample: string[]; metadata: Metadata }> {
    const matrix = await loadWatchMatrix(this.pool);
    this.lap('load watches');
    const watches = matrix.nnz;
    const res = factorize(matrix, { dim: this.opts.dim, minWatches: this.opts.minWatches, iterations: this.opts.iterations, seed: this.opts.seed });
    this.lap('factorize');
    const facts = await this.movieFacts(res.ids);
    const records: CollectionRecord[] = res.ids.map((id, i) => ({
      id,
      embedding: res.vectors.subarray(i * res.dim, (i + 1) * res.dim),
      metadata: { popularity: facts.get(id)?.popularity ?? 0, year: facts.get(id)?.year ?? -1, watchers: res.watchers[i], norm: res.norms[i], colscale: res.colscale[i] },
    }));
    const metadata = this.collectionMetadata(res.dim, {
      lambdas: Array.from(res.lambdas, (x) => x.toPrecision(9)).join(','),
      min_watches: this.opts.minWatches ?? 5,
      users: res.users,
      watches,
    });
    // Catalogue movies nobody watched yet count as skipped too, as in an incremental run.
    const inMatrix = new Set([...res.ids, ...res.skipped.map((s) => s.id)]);
    const unwatched = (await this.pool.query<{ id: string }>('SELECT id FROM movies')).rows.map((r) => r.id).filter((id) => !inMatrix.has(id));
    const skipped = res.skipped.length + unwatched.length;
    return { records, dim: res.dim, skipped: skipped ? { too_few_watchers: skipped } : {}, sample: [...res.skipped.map((s) => s.id), ...unwatched], metadata };
  }

  private async behaviourFoldIn(collection: Collection): Promise<{ records: CollectionRecord[]; dim: number; skipped: Record<string, number>; sample: string[] }> {
    const meta = collection.metadata ?? {};
    if (typeof meta.lambdas !== 'string') throw new Error(`collection ${this.name} has no lambdas in its metadata (not built by this job?); run a full build`);
    const lambdas = Float64Array.from(meta.lambdas.split(','), Number);
    const minWatches = this.opts.minWatches ?? (typeof meta.min_watches === 'number' ? meta.min_watches : 5);
    const have = await readCollection(collection, { embeddings: true, metadatas: true });
    const stored = new Map<string, { raw: Float64Array; colscale: number }>();
    have.ids.forEach((id, i) => {
      const md = have.metadatas[i] ?? {};
      const norm = typeof md.norm === 'number' ? md.norm : 1;
      stored.set(id, { raw: Float64Array.from(have.embeddings[i], (x) => x * norm), colscale: typeof md.colscale === 'number' ? md.colscale : 1 });
    });
    this.lap('read collection');
    const { rows } = await this.pool.query<{ id: string }>('SELECT id FROM movies ORDER BY id');
    const candidates = rows.map((r) => r.id).filter((id) => !stored.has(id));
    const folded = await foldIn(this.pool, candidates, { get: (id) => stored.get(id), lambdas }, { minWatches, maxWatchers: this.opts.maxWatchers });
    this.lap('fold in');
    const facts = await this.movieFacts(folded.movies.map((m) => m.id));
    const records: CollectionRecord[] = folded.movies.map((m) => ({
      id: m.id,
      embedding: m.vector,
      metadata: { popularity: facts.get(m.id)?.popularity ?? 0, year: facts.get(m.id)?.year ?? -1, watchers: m.watchers, norm: m.norm, colscale: m.colscale },
    }));
    return { records, dim: lambdas.length, skipped: folded.skipped.length ? { too_few_watchers: folded.skipped.length } : {}, sample: folded.skipped.map((s) => s.id) };
  }
}
