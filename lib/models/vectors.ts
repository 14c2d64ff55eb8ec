/**
 * Movie vectors held in memory, with nearest neighbours computed in process: a brute-force scan
 * of ≤ 27k L2-normalised vectors costs about a millisecond, and each movie's neighbour list is
 * cached, so a request never waits on the vector database and a ChromaDB outage does not touch
 * serving. An index is immutable; adding movies makes a new one (and a fresh cache).
 */
import { Worker } from 'node:worker_threads';
import type { Neighbour, VectorSpace } from './rank.ts';

export interface VectorRecord {
  id: string;
  embedding: ArrayLike<number>;
  /** From the record's metadata; null when the record has none. */
  popularity: number | null;
  /** The metadata's vote average and count, when it has them (content collections do). */
  voteAverage?: number | null;
  voteCount?: number | null;
}

export interface CachedNeighbours { idx: Int32Array; sim: Float32Array }

export class VectorIndex implements VectorSpace {
  readonly dim: number;
  readonly ids: readonly string[];
  private readonly pos: Map<string, number>;
  readonly data: Float32Array;
  private readonly pops: (number | null)[];
  /** Vote average and count per movie, null when unknown. */
  private readonly voteStats: ({ average: number; count: number } | null)[];
  private readonly cache = new Map<number, CachedNeighbours>();
  private readonly built = new WeakMap<CachedNeighbours, readonly Neighbour[]>();

  private constructor(ids: string[], data: Float32Array, dim: number, pops: (number | null)[], votes: ({ average: number; count: number } | null)[]) {
    this.ids = ids;
    this.data = data;
    this.dim = dim;
    this.pops = pops;
    this.voteStats = votes;
    this.pos = new Map(ids.map((id, i) => [id, i]));
  }

  static empty(): VectorIndex {
    return new VectorIndex([], new Float32Array(0), 0, [], []);
  }

  /** Builds an index; vectors are re-normalised (cosine = dot product), a later duplicate id wins. */
  static from(records: readonly VectorRecord[]): VectorIndex {
    return VectorIndex.empty().withRecords(records);
  }

  get size(): number {
    return this.ids.length;
  }

  has(id: string): boolean {
    return this.pos.has(id);
  }

  /**
   * A new index with these records added (or replaced); this one is left as it was. When records
   * are only added, the cached neighbour lists carry over, updated with the new vectors, so a few
   * new movies do not cost the whole cache.
   */
  withRecords(records: readonly VectorRecord[]): VectorIndex {
    if (records.length === 0) return this;
    const next = this.build(records);
    const onlyAdded = records.every((r) => !this.pos.has(r.id));
    if (onlyAdded && this.cache.size > 0) next.carryCache(this.cache, this.ids.length);
    return next;
  }

  private carryCache(old: Map<number, CachedNeighbours>, firstNew: number): void {
    const dim = this.dim;
    for (const [i, c] of old) {
      const k = c.idx.length;
      const idx = Array.from(c.idx);
      const sim = Array.from(c.sim);
      for (let j = firstNew; j < this.ids.length; j++) {
        let dot = 0;
        for (let d = 0; d < dim; d++) dot += this.data[i * dim + d] * this.data[j * dim + d];
        let p = 0;
        while (p < sim.length && sim[p] >= dot) p++;
        idx.splice(p, 0, j);
        sim.splice(p, 0, dot);
      }
      // Lists that were shorter than asked (few movies) may grow; full ones keep their length.
      const keep = k < firstNew - 1 ? k : idx.length;
      this.cache.set(i, { idx: Int32Array.from(idx.slice(0, keep)), sim: Float32Array.from(sim.slice(0, keep)) });
    }
  }

  private build(records: readonly VectorRecord[]): VectorIndex {
    const dim = this.dim || records[0].embedding.length;
    const ids = [...this.ids];
    const pops = [...this.pops];
    const votes = [...this.voteStats];
    const pos = new Map(this.pos);
    const fresh = records.filter((r) => !pos.has(r.id)).length;
    const data = new Float32Array((ids.length + fresh) * dim);
    data.set(this.data);
    for (const r of records) {
      if (r.embedding.length !== dim) throw new Error(`vector for ${r.id} has ${r.embedding.length} dimensions, the index has ${dim}`);
      let i = pos.get(r.id);
      if (i === undefined) {
        i = ids.length;
        ids.push(r.id);
        pops.push(null);
        votes.push(null);
        pos.set(r.id, i);
      }
      let norm = 0;
      for (let d = 0; d < dim; d++) norm += r.embedding[d] * r.embedding[d];
      const scale = norm > 0 ? 1 / Math.sqrt(norm) : 0;
      for (let d = 0; d < dim; d++) data[i * dim + d] = r.embedding[d] * scale;
      pops[i] = r.popularity;
      const average = r.voteAverage ?? null;
      const count = r.voteCount ?? 0;
      votes[i] = average !== null && Number.isFinite(average) && average >= 0 ? { average, count: Number.isFinite(count) ? Math.max(0, count) : 0 } : null;
    }
    return new VectorIndex(ids, data, dim, pops, votes);
  }

  /** The movie's unit vector (a view, not a copy), undefined for an unknown id. */
  vector(id: string): Float32Array | undefined {
    const i = this.pos.get(id);
    return i === undefined ? undefined : this.data.subarray(i * this.dim, (i + 1) * this.dim);
  }

  votes(position: number): { average: number; count: number } | null {
    return this.voteStats[position] ?? null;
  }

  /** (id, popularity) for every record whose metadata has a popularity. */
  *popularities(): IterableIterator<[string, number]> {
    for (let i = 0; i < this.ids.length; i++) {
      const p = this.pops[i];
      if (p !== null) yield [this.ids[i], p];
    }
  }

  similarity(a: string, b: string): number | undefined {
    const i = this.pos.get(a);
    const j = this.pos.get(b);
    if (i === undefined || j === undefined) return undefined;
    let dot = 0;
    for (let d = 0; d < this.dim; d++) dot += this.data[i * this.dim + d] * this.data[j * this.dim + d];
    return dot;
  }

  /** The k most similar other movies, most similar first; [] for an unknown id. */
  neighbours(id: string, k: number): readonly Neighbour[] {
    const i = this.pos.get(id);
    if (i === undefined || k <= 0) return [];
    let c = this.cache.get(i);
    if (c === undefined || (c.idx.length < k && c.idx.length < this.ids.length - 1)) {
      this.warm([id], k);
      c = this.cache.get(i)!;
    }
    // Built once per cached list: a request asks for hundreds of neighbours, each an allocation.
    let all = this.built.get(c);
    if (all === undefined) {
      const made: Neighbour[] = new Array(c.idx.length);
      for (let j = 0; j < made.length; j++) made[j] = { id: this.ids[c.idx[j]], similarity: c.sim[j] };
      this.built.set(c, (all = made));
    }
    return k >= all.length ? all : all.slice(0, k);
  }

  /** Same ids in the same order with the same vectors (a periodic full reload that changed nothing). */
  sameAs(other: VectorIndex): boolean {
    if (other.dim !== this.dim || other.ids.length !== this.ids.length) return false;
    for (let i = 0; i < this.ids.length; i++) if (this.ids[i] !== other.ids[i]) return false;
    for (let i = 0; i < this.data.length; i++) if (this.data[i] !== other.data[i]) return false;
    // Metadata counts too: a catalog update changes votes and popularity without moving a vector.
    for (let i = 0; i < this.ids.length; i++) {
      const a = this.voteStats[i];
      const b = other.voteStats[i];
      if (this.pops[i] !== other.pops[i] || a?.average !== b?.average || a?.count !== b?.count) return false;
    }
    return true;
  }

  /** Whether neighbours(id, k) would answer from the cache (no scan). */
  isCached(id: string, k: number): boolean {
    const i = this.pos.get(id);
    if (i === undefined || k <= 0) return true;
    const c = this.cache.get(i);
    return c !== undefined && c.idx.length >= Math.min(k, this.ids.length - 1);
  }

  /** Computes and caches the neighbours of the given movies that are not cached yet, in one pass over the vectors. */
  warm(ids: readonly string[], k: number): void {
    const want = Math.min(k, Math.max(0, this.ids.length - 1));
    if (want <= 0) return;
    const todo: number[] = [];
    for (const id of ids) {
      const i = this.pos.get(id);
      if (i === undefined || todo.includes(i)) continue;
      const c = this.cache.get(i);
      if (c === undefined || c.idx.length < want) todo.push(i);
    }
    if (todo.length === 0) return;
    const found = scanTopK(this.data, this.ids.length, this.dim, todo, want);
    todo.forEach((i, t) => this.cache.set(i, found[t]));
  }

  /**
   * Computes the neighbour lists of every movie (those in `first` before the others) in a worker
   * thread, installing them as they come; requests meanwhile scan for what is missing. Resolves
   * when done, or early when stop() returns true.
   */
  precompute(first: readonly string[], k: number, stop: () => boolean = () => false): Promise<void> {
    const want = Math.min(k, Math.max(0, this.ids.length - 1));
    const order: number[] = [];
    const queued = new Set<number>();
    for (const id of first) {
      const i = this.pos.get(id);
      if (i !== undefined && !queued.has(i)) { queued.add(i); order.push(i); }
    }
    for (let i = 0; i < this.ids.length; i++) if (!queued.has(i)) order.push(i);
    const todo = order.filter((i) => (this.cache.get(i)?.idx.length ?? -1) < want);
    if (todo.length === 0 || want === 0) return Promise.resolve();
    const install = (sources: ArrayLike<number>, lens: Int32Array, idx: Int32Array, sim: Float32Array) => {
      for (let t = 0; t < sources.length; t++) {
        const i = sources[t];
        if ((this.cache.get(i)?.idx.length ?? -1) >= want) continue;
        this.cache.set(i, { idx: idx.slice(t * want, t * want + lens[t]), sim: sim.slice(t * want, t * want + lens[t]) });
      }
    };
    return new Promise((resolve) => {
      let done = false;
      const finish = () => { if (!done) { done = true; resolve(); } };
      let worker: Worker;
      try {
        // The worker runs plain JS made from scanTopK's own source, so it needs no TypeScript loader.
        worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { data: this.data, n: this.ids.length, dim: this.dim, want, todo: Int32Array.from(todo) } });
      } catch {
        void this.precomputeHere(todo, want, stop).then(finish);
        return;
      }
      worker.unref();
      let received = 0;
      worker.on('message', (m: { sources: Int32Array; lens: Int32Array; idx: Int32Array; sim: Float32Array }) => {
        install(m.sources, m.lens, m.idx, m.sim);
        received += m.sources.length;
        if (stop()) { void worker.terminate(); finish(); }
      });
      worker.once('error', (err) => {
        console.error(`vectors: neighbour worker failed (${err.message}); computing on the main thread instead`);
        void this.precomputeHere(todo.slice(received), want, stop).then(finish);
        done = true;
      });
      worker.once('exit', () => { if (!done && received >= todo.length) finish(); });
    });
  }

  /** The fallback: the same scan in small slices on this thread, yielding between them. */
  private async precomputeHere(todo: readonly number[], want: number, stop: () => boolean): Promise<void> {
    const slice = Math.max(1, Math.floor(2_000_000 / Math.max(1, this.ids.length * this.dim)));
    for (let b = 0; b < todo.length && !stop(); b += slice) {
      const sources = todo.slice(b, b + slice).filter((i) => (this.cache.get(i)?.idx.length ?? -1) < want);
      scanTopK(this.data, this.ids.length, this.dim, sources, want).forEach((f, t) => this.cache.set(sources[t], f));
      await new Promise((r) => setTimeout(r, 2));
    }
  }

  /** How many movies have their neighbours cached (for /healthz). */
  get cachedNeighbourLists(): number {
    return this.cache.size;
  }
}

/**
 * For each source row, its `want` most similar other rows (by dot product), most similar first.
 * One pass over the rows for all sources, so a batch costs about what one source does in memory traffic.
 */
export function scanTopK(data: Float32Array, n: number, dim: number, sources: readonly number[], want: number): CachedNeighbours[] {
  const S = sources.length;
  const tIdx = new Int32Array(S * want);
  const tSim = new Float32Array(S * want).fill(-Infinity);
  const lens = new Int32Array(S);
  for (let j = 0; j < n; j++) {
    const oj = j * dim;
    for (let t = 0; t < S; t++) {
      const i = sources[t];
      if (i === j) continue;
      const oi = i * dim;
      let dot = 0;
      for (let d = 0; d < dim; d++) dot += data[oi + d] * data[oj + d];
      const base = t * want;
      const len = lens[t];
      // Sorted (descending) top list; a candidate enters only when it beats the last one.
      if (len === want && dot <= tSim[base + want - 1]) continue;
      let p = len < want ? lens[t]++ : want - 1;
      while (p > 0 && tSim[base + p - 1] < dot) {
        tSim[base + p] = tSim[base + p - 1];
        tIdx[base + p] = tIdx[base + p - 1];
        p--;
      }
      tSim[base + p] = dot;
      tIdx[base + p] = j;
    }
  }
  return Array.from({ length: S }, (_, t) => ({ idx: tIdx.slice(t * want, t * want + lens[t]), sim: tSim.slice(t * want, t * want + lens[t]) }));
}

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const scanTopK = ${scanTopK.toString()};
const { data, n, dim, want, todo } = workerData;
for (let b = 0; b < todo.length; b += 16) {
  const sources = Array.from(todo.subarray(b, b + 16));
  const found = scanTopK(data, n, dim, sources, want);
  const idx = new Int32Array(sources.length * want);
  const sim = new Float32Array(sources.length * want);
  const lens = new Int32Array(sources.length);
  found.forEach((f, t) => { idx.set(f.idx, t * want); sim.set(f.sim, t * want); lens[t] = f.idx.length; });
  parentPort.postMessage({ sources: Int32Array.from(sources), lens, idx, sim }, [idx.buffer, sim.buffer, lens.buffer]);
}
`;
