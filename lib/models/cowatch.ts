/**
 * Item-item similarity from what users watched together: for movies i and j, c_ij is how many
 * users watched both, n_i how many watched i, and the similarity of candidate j to a watched
 * source i is c_ij / (n_i^(1−α) · n_j^α). α = 0.5 is the cosine of the two audiences; a larger α
 * holds blockbusters (watched with everything) back as candidates. Each movie keeps its k most
 * similar others, so ranking a user costs k per watched movie. Pure: built from user lists the
 * caller read (from Postgres before asOf), so a model ranks only with what was known then.
 */
import type { Neighbour } from './rank.ts';

export interface CoWatchOptions {
  /** Neighbours kept per movie. */
  neighbours: number;
  /** The candidate-side exponent α of c_ij / (n_i^(1−α) · n_j^α), in [0, 1]. */
  alpha: number;
  /** Pairs watched together by fewer users than this are dropped (noise). */
  minCoWatchers: number;
}

/** Co-watch neighbour lists of every movie watched before some time. */
export class CoWatchIndex {
  private readonly pos: Map<string, number>;
  private readonly built: (readonly Neighbour[] | undefined)[] = [];

  private constructor(
    readonly movies: readonly string[],
    /** Distinct watchers per movie position. */
    readonly watchers: Int32Array,
    private readonly lists: readonly { idx: Int32Array; sim: Float32Array }[],
    /** Users the index was built from. */
    readonly users: number,
  ) {
    this.pos = new Map(movies.map((m, i) => [m, i]));
  }

  static empty(): CoWatchIndex {
    return new CoWatchIndex([], new Int32Array(0), [], 0);
  }

  get size(): number {
    return this.movies.length;
  }

  has(id: string): boolean {
    return this.pos.has(id);
  }

  /** How many users watched the movie (0 when unknown). */
  watchersOf(id: string): number {
    const i = this.pos.get(id);
    return i === undefined ? 0 : this.watchers[i];
  }

  /** The movie's k most co-watched others, most similar first; [] for a movie nobody watched. Shared: do not change it. */
  neighbours(id: string, k: number): readonly Neighbour[] {
    const i = this.pos.get(id);
    if (i === undefined) return [];
    // Built once per movie: a request asks for thousands of neighbours, and allocating them each
    // time cost as much as ranking them.
    let all = this.built[i];
    if (all === undefined) {
      const l = this.lists[i];
      const made: Neighbour[] = new Array(l.idx.length);
      for (let t = 0; t < made.length; t++) made[t] = { id: this.movies[l.idx[t]], similarity: l.sim[t] };
      this.built[i] = all = made;
    }
    return k >= all.length ? all : all.slice(0, Math.max(0, k));
  }

  /**
   * Builds the index from each user's distinct movies. `pause` is awaited between slices of
   * movies so that a service building in the background keeps answering (the work is about
   * Σ over users of (movies watched)²).
   */
  static async build(userMovies: Iterable<readonly string[]>, opts: CoWatchOptions, pause: () => Promise<void> = async () => undefined): Promise<CoWatchIndex> {
    if (!(opts.alpha >= 0 && opts.alpha <= 1)) throw new Error(`alpha must be in [0, 1] (got ${opts.alpha})`);
    const pos = new Map<string, number>();
    const movies: string[] = [];
    const rows: Int32Array[] = [];
    let read = 0;
    for (const list of userMovies) {
      const row = new Set<number>();
      for (const m of list) {
        let i = pos.get(m);
        if (i === undefined) { i = movies.length; pos.set(m, i); movies.push(m); }
        row.add(i);
      }
      if (row.size > 0) rows.push(Int32Array.from(row));
      read += list.length;
      if (read > 200_000) { read = 0; await pause(); }
    }
    const n = movies.length;
    // Movie → users, to walk from a movie to its audience's other movies.
    const watchers = new Int32Array(n);
    for (const r of rows) for (const i of r) watchers[i]++;
    const start = new Int32Array(n + 1);
    for (let i = 0; i < n; i++) start[i + 1] = start[i] + watchers[i];
    const fill = start.slice(0, n);
    const audience = new Int32Array(start[n]);
    rows.forEach((r, u) => { for (const i of r) audience[fill[i]++] = u; });

    const k = Math.max(0, opts.neighbours);
    const counts = new Float64Array(n);
    const touched = new Int32Array(n);
    const lists: { idx: Int32Array; sim: Float32Array }[] = new Array(n);
    const pow = (x: number, e: number) => (e === 0 ? 1 : e === 0.5 ? Math.sqrt(x) : e === 1 ? x : Math.pow(x, e));
    const candidateNorm = Float64Array.from(watchers, (w) => pow(w, opts.alpha));
    let work = 0;
    for (let i = 0; i < n; i++) {
      let nt = 0;
      for (let a = start[i]; a < start[i + 1]; a++) {
        const r = rows[audience[a]];
        work += r.length;
        for (let t = 0; t < r.length; t++) {
          const j = r[t];
          if (counts[j] === 0) touched[nt++] = j;
          counts[j]++;
        }
      }
      const sourceNorm = pow(watchers[i], 1 - opts.alpha);
      const idx: number[] = [];
      const sim: number[] = [];
      for (let t = 0; t < nt; t++) {
        const j = touched[t];
        const c = counts[j];
        counts[j] = 0;
        if (j === i || c < opts.minCoWatchers) continue;
        const s = c / (sourceNorm * candidateNorm[j]);
        if (idx.length === k && !better(s, j, sim[k - 1], idx[k - 1], movies)) continue;
        let p = idx.length < k ? idx.length : k - 1;
        if (idx.length < k) { idx.push(j); sim.push(s); }
        while (p > 0 && better(s, j, sim[p - 1], idx[p - 1], movies)) { idx[p] = idx[p - 1]; sim[p] = sim[p - 1]; p--; }
        idx[p] = j;
        sim[p] = s;
      }
      lists[i] = { idx: Int32Array.from(idx), sim: Float32Array.from(sim) };
      if (work > 2_000_000) { work = 0; await pause(); }
    }
    return new CoWatchIndex(movies, watchers, lists, rows.length);
  }
}

// Higher similarity first; equal ones by id so that the lists do not depend on reading order.
const better = (s: number, j: number, s2: number, j2: number, ids: readonly string[]): boolean => s > s2 || (s === s2 && ids[j] < ids[j2]);
