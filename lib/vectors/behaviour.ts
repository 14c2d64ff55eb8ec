/**
 * Behaviour vectors: movies watched by the same people end up close together.
 *
 * Model. Let A be the users × movies watch matrix with w = log1p(minutes seen) (a longer watch says
 * more than a click). Each user row is scaled by r_u = 1/sqrt(Σ_i w_ui) (heavy users do not
 * dominate), each movie column by c_i so that the Gram matrix G = ÃᵀÃ has a unit diagonal: G is
 * then the cosine similarity of the movies' (user-weighted) audiences, the classic item-item CF
 * similarity. The vectors are the spectral embedding E = V_k Λ_k^½ of its top-k eigenpairs, so
 * E_i·E_j ≈ G_ij, found by randomized subspace iteration (linalg.ts) on the block product
 * G·X = Ãᵀ(Ã·X), computed one user row at a time: only the sparse rows and a few movies × l
 * blocks are ever in memory, never the users × k matrix nor the movies × movies G. This is the
 * truncated SVD of Ã, i.e. a factorisation of the watch matrix (U Λ^½ Vᵀ) with user factors
 * U_u = Ã_u V Λ^-½ that are never stored.
 *
 * Fold-in. A new movie's vector is Ãᵀ-projected through its watchers' user factors:
 * e_new = Σ_u ã_u,new · U_u with U_u = Σ_i ã_ui E_i ⊘ Λ (= Ã_u V Λ^-½), which for a movie
 * that was in the build reproduces its E (up to the truncation). It needs, per stored record, the raw vector (the
 * stored unit vector × metadata `norm`) and `colscale` c_i, and Λ from the collection metadata.
 *
 * Movies with fewer than `minWatches` distinct watchers are skipped and reported: their
 * audience is too small for a meaningful direction (inference falls back to content vectors).
 *
 * Memory at 1M users and 20M watches: three typed arrays of nnz (80 MB each for columns and
 * weights, transient parse buffers) plus 4 MB of row offsets.
 */
import { to as copyTo } from 'pg-copy-streams';
import type { Pool } from '../db.ts';
import { topEigenpairs } from './linalg.ts';

export interface WatchMatrix {
  users: number;
  nnz: number;
  rowPtr: Int32Array;
  cols: Int32Array;
  vals: Float32Array;
  /** Column index → movie slug. */
  movieIds: string[];
}

export const watchWeight = (minutes: number): number => Math.log1p(Math.max(1, minutes));

class GrowArray<T extends Int32Array | Float32Array> {
  length = 0;
  constructor(public data: T, private make: (n: number) => T) {}
  push(v: number): void {
    if (this.length === this.data.length) {
      const next = this.make(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.length++] = v;
  }
  trimmed(): T { return this.data.subarray(0, this.length) as T; }
}

/**
 * Streams the watches table (COPY, ordered by user) into a CSR matrix with raw weights w.
 * `movieIds` maps column indexes to slugs.
 */
export async function loadWatchMatrix(pool: Pool): Promise<WatchMatrix> {
  const client = await pool.connect();
  try {
    const stream = client.query(copyTo('COPY (SELECT user_id, movie_id, minutes FROM watches ORDER BY user_id) TO STDOUT'));
    const movieIndex = new Map<string, number>();
    const movieIds: string[] = [];
    const rowPtr = new GrowArray(new Int32Array(1 << 16), (n) => new Int32Array(n));
    const cols = new GrowArray(new Int32Array(1 << 20), (n) => new Int32Array(n));
    const vals = new GrowArray(new Float32Array(1 << 20), (n) => new Float32Array(n));
    let lastUser = NaN;
    let rest = '';
    const line = (s: string, start: number, end: number) => {
      const t1 = s.indexOf('\t', start);
      const t2 = s.indexOf('\t', t1 + 1);
      if (t1 < 0 || t2 < 0 || t2 >= end) throw new Error(`unexpected COPY line: ${s.slice(start, end)}`);
      const user = Number(s.slice(start, t1));
      const movie = s.slice(t1 + 1, t2);
      const minutes = Number(s.slice(t2 + 1, end));
      if (user !== lastUser) { rowPtr.push(cols.length); lastUser = user; }
      let m = movieIndex.get(movie);
      if (m === undefined) { m = movieIds.length; movieIndex.set(movie, m); movieIds.push(movie); }
      cols.push(m);
      vals.push(watchWeight(minutes));
    };
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      const s = rest + chunk.toString('utf8');
      let start = 0;
      for (let nl = s.indexOf('\n'); nl >= 0; nl = s.indexOf('\n', start)) {
        line(s, start, nl);
        start = nl + 1;
      }
      rest = s.slice(start);
    }
    if (rest) line(rest, 0, rest.length);
    rowPtr.push(cols.length);
    return { users: rowPtr.length - 1, nnz: cols.length, rowPtr: rowPtr.trimmed(), cols: cols.trimmed(), vals: vals.trimmed(), movieIds };
  } finally {
    client.release();
  }
}

export interface BehaviourResult {
  ids: string[];
  /** Unit vectors, row-major ids.length × dim. */
  vectors: Float32Array;
  dim: number;
  norms: Float64Array;
  colscale: Float64Array;
  watchers: Int32Array;
  /** Λ, the eigenvalues (needed to fold new movies in later). */
  lambdas: Float64Array;
  skipped: { id: string; watchers: number }[];
  users: number;
  nnz: number;
}

/**
 * Weights the matrix in place (w → ã = r_u c_i w), dropping movies under `minWatches`, and
 * computes the spectral embedding. The matrix is consumed.
 */
export function factorize(m: WatchMatrix, opts: { dim?: number; minWatches?: number; iterations?: number; oversample?: number; seed?: number } = {}): BehaviourResult {
  const minWatches = opts.minWatches ?? 5;
  const nMovies = m.movieIds.length;
  const watchers = new Int32Array(nMovies);
  for (let p = 0; p < m.nnz; p++) watchers[m.cols[p]]++;
  const keep = new Int32Array(nMovies).fill(-1);
  const ids: string[] = [];
  const skipped: { id: string; watchers: number }[] = [];
  for (let i = 0; i < nMovies; i++) {
    if (watchers[i] >= minWatches) { keep[i] = ids.length; ids.push(m.movieIds[i]); } else skipped.push({ id: m.movieIds[i], watchers: watchers[i] });
  }
  const n = ids.length;

  // Row scale over all of a user's watches (kept or not), as the fold-in computes it.
  const d = new Float64Array(n);
  for (let u = 0; u < m.users; u++) {
    let sum = 0;
    for (let p = m.rowPtr[u]; p < m.rowPtr[u + 1]; p++) sum += m.vals[p];
    const r = sum > 0 ? 1 / Math.sqrt(sum) : 0;
    for (let p = m.rowPtr[u]; p < m.rowPtr[u + 1]; p++) {
      m.vals[p] *= r;
      const j = keep[m.cols[p]];
      if (j >= 0) d[j] += m.vals[p] * m.vals[p];
    }
  }
  const colscale = new Float64Array(n);
  for (let j = 0; j < n; j++) colscale[j] = d[j] > 0 ? 1 / Math.sqrt(d[j]) : 0;

  // Compact in place: only kept movies, columns renumbered, values fully weighted.
  let w = 0;
  const rowPtr = m.rowPtr;
  let start = rowPtr[0];
  for (let u = 0; u < m.users; u++) {
    const end = rowPtr[u + 1];
    rowPtr[u] = w;
    for (let p = start; p < end; p++) {
      const j = keep[m.cols[p]];
      if (j < 0) continue;
      m.cols[w] = j;
      m.vals[w] = m.vals[p] * colscale[j];
      w++;
    }
    start = end;
  }
  rowPtr[m.users] = w;
  const cols = m.cols, vals = m.vals, users = m.users;

  if (n === 0) return { ids, vectors: new Float32Array(0), dim: 0, norms: new Float64Array(0), colscale, watchers: new Int32Array(0), lambdas: new Float64Array(0), skipped, users, nnz: w };

  // G·X = Ãᵀ(Ã X), one user row at a time.
  const product = (X: Float64Array, Z: Float64Array, l: number) => {
    const t = new Float64Array(l);
    for (let u = 0; u < users; u++) {
      const a = rowPtr[u], b = rowPtr[u + 1];
      if (b - a === 0) continue;
      t.fill(0);
      for (let p = a; p < b; p++) {
        const v = vals[p], o = cols[p] * l;
        for (let c = 0; c < l; c++) t[c] += v * X[o + c];
      }
      for (let p = a; p < b; p++) {
        const v = vals[p], o = cols[p] * l;
        for (let c = 0; c < l; c++) Z[o + c] += v * t[c];
      }
    }
  };
  const eig = topEigenpairs(product, n, opts.dim ?? 32, { iterations: opts.iterations ?? 5, oversample: opts.oversample ?? 16, seed: opts.seed ?? 42 });
  const k = eig.k;
  const lambdas = eig.values.map((x) => Math.max(x, 0));
  const vectors = new Float32Array(n * k);
  const norms = new Float64Array(n);
  const sq = lambdas.map(Math.sqrt);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < k; j++) { const e = eig.vectors[i * k + j] * sq[j]; s += e * e; }
    const norm = Math.sqrt(s);
    norms[i] = norm;
    for (let j = 0; j < k; j++) vectors[i * k + j] = norm > 0 ? (eig.vectors[i * k + j] * sq[j]) / norm : 0;
  }
  const keptWatchers = new Int32Array(n);
  for (let i = 0; i < nMovies; i++) if (keep[i] >= 0) keptWatchers[keep[i]] = watchers[i];
  return { ids, vectors, dim: k, norms, colscale, watchers: keptWatchers, lambdas, skipped, users, nnz: w };
}

export interface StoredBehaviour {
  /** Raw (un-normalised) vector of a movie in the collection, and its column scale. */
  get(id: string): { raw: Float64Array; colscale: number } | undefined;
  lambdas: Float64Array;
}

export interface FoldedMovie { id: string; vector: Float32Array; norm: number; colscale: number; watchers: number }

/**
 * Vectors for movies that are not in the collection yet, from their watchers' user factors (see
 * the header). At most `maxWatchers` watchers per movie are used (the earliest), which keeps a
 * fold-in cheap; users' histories are read in chunks.
 */
export async function foldIn(pool: Pool, newIds: string[], stored: StoredBehaviour, opts: { minWatches?: number; maxWatchers?: number } = {}): Promise<{ movies: FoldedMovie[]; skipped: { id: string; watchers: number }[] }> {
  const minWatches = opts.minWatches ?? 5;
  const maxWatchers = opts.maxWatchers ?? 2000;
  const k = stored.lambdas.length;
  const floor = Math.max(...stored.lambdas) * 1e-9 || 1e-12;
  const { rows } = await pool.query<{ movie_id: string; user_id: number; minutes: number; n: number }>(
    `SELECT movie_id, user_id, minutes, n FROM (
       SELECT movie_id, user_id, minutes, count(*) OVER (PARTITION BY movie_id)::int AS n,
              row_number() OVER (PARTITION BY movie_id ORDER BY first_at, user_id) AS rank
       FROM watches WHERE movie_id = ANY($1::text[])) w
     WHERE rank <= $2`, [newIds, maxWatchers]);
  const byMovie = new Map<string, { users: number[]; weights: number[]; total: number }>();
  for (const r of rows) {
    let e = byMovie.get(r.movie_id);
    if (!e) byMovie.set(r.movie_id, (e = { users: [], weights: [], total: r.n }));
    e.users.push(r.user_id);
    e.weights.push(watchWeight(r.minutes));
  }
  const skipped: { id: string; watchers: number }[] = [];
  const todo: string[] = [];
  for (const id of newIds) {
    const n = byMovie.get(id)?.total ?? 0;
    if (n >= minWatches) todo.push(id); else skipped.push({ id, watchers: n });
  }
  const userSet = new Set<number>();
  for (const id of todo) for (const u of byMovie.get(id)!.users) userSet.add(u);

  // User factors U_u = r_u Σ_i w_ui c_i E_i ⊘ Λ, with r_u over all of the user's watches.
  const factors = new Map<number, { f: Float64Array; r: number }>();
  const users = [...userSet];
  for (let i = 0; i < users.length; i += 5000) {
    const chunk = users.slice(i, i + 5000);
    const h = await pool.query<{ user_id: number; movie_id: string; minutes: number }>(
      'SELECT user_id, movie_id, minutes FROM watches WHERE user_id = ANY($1::int[])', [chunk]);
    const acc = new Map<number, { f: Float64Array; sum: number }>();
    for (const r of h.rows) {
      let a = acc.get(r.user_id);
      if (!a) acc.set(r.user_id, (a = { f: new Float64Array(k), sum: 0 }));
      const w = watchWeight(r.minutes);
      a.sum += w;
      const s = stored.get(r.movie_id);
      if (!s) continue;
      for (let j = 0; j < k; j++) a.f[j] += w * s.colscale * s.raw[j];
    }
    for (const [u, a] of acc) {
      const r = a.sum > 0 ? 1 / Math.sqrt(a.sum) : 0;
      for (let j = 0; j < k; j++) a.f[j] = (a.f[j] * r) / Math.max(stored.lambdas[j], floor);
      factors.set(u, { f: a.f, r });
    }
  }

  const movies: FoldedMovie[] = [];
  for (const id of todo) {
    const e = byMovie.get(id)!;
    let dsum = 0;
    for (let x = 0; x < e.users.length; x++) { const r = factors.get(e.users[x])?.r ?? 0; dsum += (r * e.weights[x]) ** 2; }
    const c = dsum > 0 ? 1 / Math.sqrt(dsum) : 0;
    const v = new Float64Array(k);
    for (let x = 0; x < e.users.length; x++) {
      const uf = factors.get(e.users[x]);
      if (!uf) continue;
      const a = uf.r * c * e.weights[x];
      for (let j = 0; j < k; j++) v[j] += a * uf.f[j];
    }
    const norm = Math.hypot(...v);
    if (!(norm > 0)) { skipped.push({ id, watchers: e.total }); continue; }
    movies.push({ id, vector: Float32Array.from(v, (x) => x / norm), norm, colscale: c, watchers: e.total });
  }
  return { movies, skipped };
}
