import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChromaClient } from '../lib/chroma.ts';
import { loadConfig } from '../lib/config.ts';
import type { Pool } from '../lib/db.ts';
import { buildVectors } from '../lib/vectors/build.ts';
import { CONTENT_DIM } from '../lib/vectors/content.ts';
import { Rng } from '../lib/random.ts';
import { symmetricEigen, topEigenpairs } from '../lib/vectors/linalg.ts';
import { readCollection } from '../lib/vectors/store.ts';
import { scratchDatabase } from './support/db.ts';
import { requireServer } from './support/servers.ts';

const cfg = loadConfig();
const chroma = createChromaClient(cfg);
const tag = `${process.pid}-${Date.now()}`;
const contentName = `test-vec-content-${tag}`;
const behaviourName = `test-vec-behaviour-${tag}`;
let db: { pool: Pool; drop: () => Promise<void> };

beforeAll(async () => {
  const url = new URL(cfg.chroma.url);
  await requireServer('chroma', Number(url.port), url.hostname);
  db = await scratchDatabase('vectors');
});

afterAll(async () => {
  // Both collections and any staging collection a failed build may have left.
  for (const c of await chroma.listCollections()) if (c.name.includes(tag)) await chroma.deleteCollection({ name: c.name }).catch(() => undefined);
  // pg-pool's end() resolves before its clients have closed, and the DROP ... WITH (FORCE) in
  // drop() can then kill one mid-close; that error must not count against the tests.
  db?.pool.on('error', () => undefined);
  await db?.drop();
});

const cosine = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let d = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) { d += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
  return d / Math.sqrt(na * nb);
};

async function addMovie(id: string, m: { year: number | null; genres: string[]; lang: string; pop: number; vote: number } | null): Promise<void> {
  if (!m) { await db.pool.query('INSERT INTO movies (id) VALUES ($1)', [id]); return; }
  await db.pool.query(
    `INSERT INTO movies (id, title, year, genres, original_language, popularity, vote_average, vote_count, fetched_at)
     VALUES ($1, $1, $2, $3, $4, $5, $6, 100, now())`, [id, m.year, m.genres, m.lang, m.pop, m.vote]);
}

describe('linear algebra', () => {
  it('finds the top eigenpairs of a known symmetric matrix', () => {
    // G = Q diag(9, 4, 1, 0.5, 0.1, …) Qᵀ with a random orthogonal Q.
    const n = 30;
    const rng = Rng.unhashed(7);
    const M = new Float64Array(n * n);
    for (let i = 0; i < M.length; i++) M[i] = rng.normal();
    const S = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) S[i * n + j] = M[i * n + j] + M[j * n + i];
    const Q = symmetricEigen(S, n).vectors;
    const want = Array.from({ length: n }, (_, i) => [9, 4, 1, 0.5][i] ?? 0.1 / (i + 1));
    const G = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) { let s = 0; for (let c = 0; c < n; c++) s += Q[i * n + c] * want[c] * Q[j * n + c]; G[i * n + j] = s; }
    const product = (X: Float64Array, Z: Float64Array, l: number) => {
      for (let i = 0; i < n; i++) for (let c = 0; c < l; c++) { let s = 0; for (let j = 0; j < n; j++) s += G[i * n + j] * X[j * l + c]; Z[i * l + c] = s; }
    };
    const top = topEigenpairs(product, n, 3, { oversample: 5, iterations: 4 });
    expect(Array.from(top.values).map((v) => Number(v.toFixed(6)))).toEqual([9, 4, 1]);
    for (let c = 0; c < 3; c++) {
      const v = Array.from({ length: n }, (_, i) => top.vectors[i * 3 + c]);
      const q = Array.from({ length: n }, (_, i) => Q[i * n + c]);
      expect(Math.abs(cosine(v, q))).toBeCloseTo(1, 6);
    }
  });
});

describe('content vectors', () => {
  it('puts movies with identical metadata next to each other, skips unfetched ones, and adds new ones incrementally', async () => {
    const drama = { year: 1994, genres: ['Drama', 'Crime'], lang: 'en', pop: 40, vote: 8.4 };
    await addMovie('twin+a+1994', drama);
    await addMovie('twin+b+1994', drama);
    await addMovie('near+drama+1996', { year: 1996, genres: ['Drama'], lang: 'en', pop: 20, vote: 7.5 });
    await addMovie('horror+2019', { year: 2019, genres: ['Horror'], lang: 'en', pop: 5, vote: 5.2 });
    await addMovie('anime+2003', { year: 2003, genres: ['Animation', 'Fantasy'], lang: 'ja', pop: 15, vote: 8 });
    await addMovie('french+comedy+1965', { year: 1965, genres: ['Comedy', 'Romance'], lang: 'fr', pop: 2, vote: 6.8 });
    await addMovie('unknown+year', { year: null, genres: ['Documentary'], lang: 'xx', pop: 0.5, vote: 0 });
    await addMovie('not+fetched+yet', null);

    // Incremental on a collection that does not exist yet is a full build.
    const first = await buildVectors(cfg, db.pool, { kind: 'content', incremental: true, collection: contentName });
    expect(first).toMatchObject({ mode: 'full', upserted: 7, total: 7, dim: CONTENT_DIM, skipped: { no_metadata_yet: 1 }, skippedSample: ['not+fetched+yet'] });

    const col = await chroma.getCollection({ name: contentName });
    expect(col.configuration.hnsw?.space).toBe('cosine');
    expect(col.metadata).toMatchObject({ kind: 'content', dim: CONTENT_DIM });
    const all = await readCollection(col, { embeddings: true, metadatas: true });
    const byId = new Map(all.ids.map((id, i) => [id, { e: all.embeddings[i], m: all.metadatas[i] }]));
    for (const { e } of byId.values()) expect(Math.hypot(...e)).toBeCloseTo(1, 5);
    expect(byId.get('unknown+year')!.m).toMatchObject({ year: -1, popularity: 0.5, language: 'xx' });
    expect(byId.get('twin+a+1994')!.m).toMatchObject({ year: 1994, popularity: 40, genres: 'Drama|Crime' });

    const res = await col.query({ queryEmbeddings: [byId.get('twin+a+1994')!.e], nResults: 3, include: ['distances'] });
    expect(new Set(res.ids[0].slice(0, 2))).toEqual(new Set(['twin+a+1994', 'twin+b+1994']));
    expect(res.ids[0][2]).toBe('near+drama+1996');
    expect(Number(res.distances[0][1])).toBeLessThan(1e-5);
    expect(cosine(byId.get('near+drama+1996')!.e, byId.get('twin+a+1994')!.e)).toBeGreaterThan(cosine(byId.get('horror+2019')!.e, byId.get('twin+a+1994')!.e));

    // The catalog fills the missing movie and a new one arrives: an incremental run adds just those.
    await db.pool.query("UPDATE movies SET genres = '{Drama,Crime}', year = 1994, original_language = 'en', popularity = 40, vote_average = 8.4, vote_count = 100, fetched_at = now() WHERE id = 'not+fetched+yet'");
    await addMovie('brand+new+2024', { year: 2024, genres: ['Horror'], lang: 'en', pop: 5, vote: 5.2 });
    const second = await buildVectors(cfg, db.pool, { kind: 'content', incremental: true, collection: contentName });
    expect(second).toMatchObject({ mode: 'incremental', upserted: 2, total: 9, skipped: {} });
    const after = await readCollection(col, { embeddings: true });
    for (const [i, id] of after.ids.entries()) if (byId.has(id)) expect(after.embeddings[i]).toEqual(byId.get(id)!.e);
    const near = await col.query({ queryEmbeddings: [byId.get('twin+a+1994')!.e], nResults: 3 });
    expect(new Set(near.ids[0])).toEqual(new Set(['twin+a+1994', 'twin+b+1994', 'not+fetched+yet']));
    const horror = await col.query({ queryEmbeddings: [byId.get('horror+2019')!.e], nResults: 2 });
    expect(horror.ids[0]).toContain('brand+new+2024');
    // Nothing new: nothing written.
    expect(await buildVectors(cfg, db.pool, { kind: 'content', incremental: true, collection: contentName })).toMatchObject({ upserted: 0, total: 9 });
  });
});

describe('behaviour vectors', () => {
  // Planted structure: two groups of users, each watching mostly its own cluster of 20 movies,
  // with a little cross-over noise; plus a movie too rarely watched to get a vector.
  const clusters = { a: Array.from({ length: 20 }, (_, i) => `clu+a+${i}`), b: Array.from({ length: 20 }, (_, i) => `clu+b+${i}`) };
  const cluster = (id: string) => (id.startsWith('clu+a') || id.startsWith('new+a') ? 'a' : 'b');

  async function insertWatches(rows: [number, string, number][]): Promise<void> {
    await db.pool.query(
      `INSERT INTO watches (user_id, movie_id, first_at, last_at, minutes, max_minute)
       SELECT u, m, now(), now(), n, n FROM unnest($1::int[], $2::text[], $3::int[]) AS x(u, m, n)`,
      [rows.map((r) => r[0]), rows.map((r) => r[1]), rows.map((r) => r[2])]);
  }

  it('puts co-watched movies nearer than unrelated ones and folds new movies in without touching the others', async () => {
    const rng = Rng.unhashed(3);
    const rows: [number, string, number][] = [];
    for (let u = 0; u < 160; u++) {
      const own = u < 80 ? clusters.a : clusters.b;
      const other = u < 80 ? clusters.b : clusters.a;
      const picks = new Set<string>();
      while (picks.size < 8) picks.add(own[Math.floor(rng.next() * own.length)]);
      if (rng.next() < 0.3) picks.add(other[Math.floor(rng.next() * other.length)]);
      for (const m of picks) rows.push([u, m, 1 + Math.floor(rng.next() * 100)]);
    }
    rows.push([0, 'rare+movie', 50], [1, 'rare+movie', 50]);
    await insertWatches(rows);
    await db.pool.query(`INSERT INTO movies (id, year, popularity, fetched_at) SELECT unnest($1::text[]), 2001, 3.5, now() ON CONFLICT (id) DO UPDATE SET year = 2001, popularity = 3.5, fetched_at = now()`, [[...clusters.a, ...clusters.b, 'rare+movie']]);

    const full = await buildVectors(cfg, db.pool, { kind: 'behaviour', collection: behaviourName, dim: 8, minWatches: 3 });
    // Skipped: rare+movie (2 watchers) first, then catalogue movies nobody watched (the content test's).
    const { rows: [{ n: movieCount }] } = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM movies');
    expect(full).toMatchObject({ mode: 'full', upserted: 40, total: 40, dim: 8, skipped: { too_few_watchers: movieCount - 40 } });
    expect(full.skippedSample[0]).toBe('rare+movie');

    const col = await chroma.getCollection({ name: behaviourName });
    expect(col.configuration.hnsw?.space).toBe('cosine');
    const before = await readCollection(col, { embeddings: true, metadatas: true });
    const emb = new Map(before.ids.map((id, i) => [id, before.embeddings[i]]));
    expect(before.metadatas[0]).toMatchObject({ year: 2001, popularity: 3.5 });
    expect(typeof before.metadatas[0]!.watchers).toBe('number');

    let intra = 0, inter = 0, ni = 0, nx = 0;
    for (const x of before.ids) for (const y of before.ids) {
      if (x >= y) continue;
      const c = cosine(emb.get(x)!, emb.get(y)!);
      if (cluster(x) === cluster(y)) { intra += c; ni++; } else { inter += c; nx++; }
    }
    expect(intra / ni).toBeGreaterThan(inter / nx + 0.3);
    // Each movie's 5 nearest neighbours are (nearly) all from its own cluster.
    const res = await col.query({ queryEmbeddings: before.ids.map((id) => emb.get(id)!), nResults: 6 });
    let same = 0;
    res.ids.forEach((ns, q) => { for (const id of ns.slice(1)) if (cluster(id) === cluster(before.ids[q])) same++; });
    expect(same / (before.ids.length * 5)).toBeGreaterThan(0.9);

    // A new movie watched by 12 users of group a is folded in from their user factors.
    await insertWatches(Array.from({ length: 12 }, (_, i) => [i * 5, 'new+a+movie', 60] as [number, string, number]));
    await db.pool.query("INSERT INTO movies (id) VALUES ('new+a+movie')");
    const inc = await buildVectors(cfg, db.pool, { kind: 'behaviour', incremental: true, collection: behaviourName });
    // Every other movie without a vector (rare+movie, the content test's movies) has too few watchers.
    const { rows: [{ n: without }] } = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM movies WHERE NOT id = ANY($1::text[])', [before.ids]);
    expect(inc).toMatchObject({ mode: 'incremental', upserted: 1, total: 41, skipped: { too_few_watchers: without - 1 } });
    const after = await readCollection(col, { embeddings: true, metadatas: true });
    expect(after.ids).toHaveLength(41);
    for (const [i, id] of after.ids.entries()) if (emb.has(id)) expect(after.embeddings[i]).toEqual(emb.get(id));
    const newIdx = after.ids.indexOf('new+a+movie');
    expect(after.metadatas[newIdx]).toMatchObject({ watchers: 12, year: -1, popularity: 0 });
    const q = await col.query({ queryEmbeddings: [after.embeddings[newIdx]], nResults: 6 });
    expect(q.ids[0][0]).toBe('new+a+movie');
    expect(q.ids[0].slice(1).filter((id) => cluster(id) === 'a').length).toBeGreaterThanOrEqual(4);

    // Fold-in reproduces an in-sample movie's own vector: a check that the algebra is right.
    const { foldIn } = await import('../lib/vectors/behaviour.ts');
    const lambdas = Float64Array.from(String(col.metadata?.lambdas ?? (await chroma.getCollection({ name: behaviourName })).metadata!.lambdas).split(','), Number);
    const stored = new Map(before.ids.map((id, i) => [id, { raw: Float64Array.from(before.embeddings[i], (x) => x * (before.metadatas[i]!.norm as number)), colscale: before.metadatas[i]!.colscale as number }]));
    const refold = await foldIn(db.pool, ['clu+a+3'], { get: (id) => stored.get(id), lambdas }, { minWatches: 3 });
    expect(cosine(refold.movies[0].vector, emb.get('clu+a+3')!)).toBeGreaterThan(0.99);
  });
});
