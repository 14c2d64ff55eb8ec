/**
 * One model version at serving time: the spec, the movie vectors of its collection held in
 * memory, the cached cold-start list, and the per-request path (history from Postgres, rank in
 * process) under a deadline. ChromaDB is only read in the background, so it being slow or down
 * never delays an answer; Postgres being slow or down turns into the cached list, counted.
 */
import type { ChromaClient, Collection } from 'chromadb';
import type { Pool } from '../../lib/db.ts';
import { Registry, latencyBuckets } from '../../lib/metrics.ts';
import { chromaClientAt } from '../../lib/chroma.ts';
import { fetchAllVectors, fetchIds, fetchVectors, openCollection } from '../../lib/models/collection.ts';
import { catalogPopularity, mostWatched, readHistory, recentWatchCounts } from '../../lib/models/history.ts';
import { coWatchLists, coWatchPrior, listsAsOf, rankWithLists, recentStarts, type CoWatchLists, type ServingLists } from '../../lib/models/lists.ts';
import { coldStartList, LIST_SIZE, mergePopularity, neighbourCount, padPopular, popularityTable, selectSources, usesVectors, type PopularityTable } from '../../lib/models/rank.ts';
import type { LoadedSpec } from '../../lib/models/spec.ts';
import { VectorIndex } from '../../lib/models/vectors.ts';
import type { HistoryCache } from './history-cache.ts';
import type { HistoryEntry } from '../../lib/models/rank.ts';

export interface EngineOptions {
  /** The answer budget: past it the request is answered from the cached list. */
  deadlineMs: number;
  /** How often to look for new vectors (and retry while none are loaded). */
  refreshMs: number;
  /** How often to reload the whole collection (picks up changed vectors). */
  fullReloadMs: number;
  /** How often to refresh the popular and cold-start lists. */
  listsRefreshMs: number;
  /** Users' histories kept in memory between requests (absent: every request reads Postgres). */
  historyCache?: HistoryCache;
}

export type FallbackReason = 'deadline' | 'postgres' | 'vectors_unavailable' | 'internal';

export interface Answer {
  ids: string[];
  /** model: ranked from history; cold-start: no history; fallback: the cached list, see reason. */
  outcome: 'model' | 'cold-start' | 'fallback';
  reason?: FallbackReason;
}

const CHROMA_TIMEOUT_MS = 60_000;
/** Multiply-adds a request may spend scanning for missing neighbour lists (~2-4 ms). */
const SCAN_BUDGET = 3_000_000;
/** How often the whole catalog popularity is re-read (between, only new fetches). */
const CATALOG_FULL_MS = 10 * 60_000;
/** How often the cowatch rule's co-watch index is rebuilt from the whole history (its recent starts follow every list refresh). */
const COWATCH_REBUILD_MS = 10 * 60_000;
/** Lists as of past times kept (each asOf a client asks for builds them once). */
const AS_OF_CACHE = 8;
/** How long an asOf request may wait for its lists to be built the first time. */
const AS_OF_BUILD_MS = 120_000;


function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms); }),
  ]);
}

const message = (err: unknown): string => (err instanceof Error ? `${err.name}: ${err.message}` : String(err)).split('\n')[0];

export class Engine {
  readonly registry = new Registry();
  private readonly latency = this.registry.histogram('inference_request_duration_seconds', 'Time to answer GET /recommend, by outcome', latencyBuckets, ['outcome']);
  private readonly fallbacks = this.registry.counter('inference_fallbacks_total', 'Answers served from the cached popular list, by reason', ['reason']);
  private readonly errors = this.registry.counter('inference_errors_total', 'Errors by kind (postgres, chroma, internal)', ['kind']);
  private readonly badRequests = this.registry.counter('inference_bad_requests_total', 'Requests answered 400');
  private readonly vectorsGauge = this.registry.gauge('inference_vectors', 'Movie vectors held in memory', ['collection']);
  private readonly vectorsLoaded = this.registry.gauge('inference_vectors_loaded_timestamp_seconds', 'When the vectors were last read from ChromaDB');
  private readonly listsGauge = this.registry.gauge('inference_lists_refreshed_timestamp_seconds', 'When the cold-start list was last refreshed');
  private readonly historyReads = this.registry.counter('inference_history_reads_total', 'Histories of requests without asOf, by where they came from (memory, postgres)', ['from']);

  private index: VectorIndex | null = null;
  private collection: Collection | null = null;
  private readonly chroma: ChromaClient;
  private popularity: PopularityTable = popularityTable([]);
  private catalogPops = new Map<string, number>();
  private catalogLatest: Date | null = null;
  private catalogFullAt = 0;
  private popular: string[] = [];
  private coldStart: string[] = [];
  private readonly asOfLists = new Map<number, Promise<ServingLists>>();
  private cowatch: CoWatchLists | null = null;
  private cowatchBuiltAt = 0;
  private vectorState = { state: 'loading' as 'loading' | 'ready' | 'unavailable', loadedAt: null as string | null, refreshedAt: null as string | null, lastError: null as string | null, fullLoads: 0, incrementalAdds: 0 };
  private listsState = { refreshedAt: null as string | null, lastError: null as string | null };
  private timers: NodeJS.Timeout[] = [];
  private stopped = false;
  private lastFullLoad = 0;
  private neighbourState: { state: 'idle' | 'computing' | 'ready' | 'failed'; seconds: number | null } = { state: 'idle', seconds: null };

  constructor(readonly model: LoadedSpec, private readonly pool: Pool, chromaUrl: string, readonly opts: EngineOptions) {
    this.chroma = chromaClientAt(chromaUrl);
  }

  /** Starts the background loops; returns at once (serving works before vectors arrive). */
  start(): void {
    this.opts.historyCache?.start();
    void this.vectorLoop();
    void this.listsLoop();
  }

  stop(): void {
    this.stopped = true;
    this.opts.historyCache?.stop();
    for (const t of this.timers) clearTimeout(t);
  }

  private later(fn: () => Promise<void>, ms: number): void {
    if (this.stopped) return;
    const t = setTimeout(() => { this.timers = this.timers.filter((x) => x !== t); void fn(); }, ms);
    t.unref();
    this.timers.push(t);
  }

  // ---- vectors ---------------------------------------------------------------------------

  private async vectorLoop(): Promise<void> {
    try {
      const full = this.index === null || Date.now() - this.lastFullLoad >= this.opts.fullReloadMs;
      await withTimeout(full ? this.loadAll() : this.loadNew(), CHROMA_TIMEOUT_MS, 'reading vectors from ChromaDB');
      this.vectorState.lastError = null;
      this.vectorState.refreshedAt = new Date().toISOString();
    } catch (err) {
      // Keep serving with what is in memory; the collection handle may be stale after a restart.
      this.collection = null;
      this.errors.inc({ kind: 'chroma' });
      this.vectorState.lastError = message(err);
      if (this.index === null) this.vectorState.state = 'unavailable';
    }
    this.later(() => this.vectorLoop(), this.index === null ? Math.min(this.opts.refreshMs, 2000) : this.opts.refreshMs);
  }

  private async open(): Promise<Collection> {
    if (!this.collection) this.collection = await openCollection(this.chroma, this.model.spec.collection);
    return this.collection;
  }

  private async loadAll(): Promise<void> {
    const records = await fetchAllVectors(await this.open());
    const next = VectorIndex.from(records);
    // Nothing changed: keep the index and its computed neighbour lists.
    if (this.index === null || !next.sameAs(this.index)) this.swapIndex(next);
    this.lastFullLoad = Date.now();
    this.vectorState.fullLoads++;
  }

  /** New ids only: the common case is a handful of new movies since the last look. */
  private async loadNew(): Promise<void> {
    const collection = await this.open();
    const current = this.index!;
    const count = await collection.count();
    if (count === current.size) return;
    const ids = await fetchIds(collection);
    if (count < current.size || ids.length < current.size) {
      await this.loadAll(); // something was deleted: start over
      return;
    }
    const fresh = ids.filter((id) => !current.has(id));
    if (fresh.length === 0) return;
    const records = await fetchVectors(collection, fresh);
    this.swapIndex(current.withRecords(records));
    this.vectorState.incrementalAdds += records.length;
  }

  private swapIndex(next: VectorIndex): void {
    if (this.index !== null && this.index.dim !== 0 && next.dim !== 0 && next.dim !== this.index.dim) {
      console.warn(`inference: vector dimension changed from ${this.index.dim} to ${next.dim}`);
    }
    this.index = next;
    this.vectorState.state = 'ready';
    this.vectorState.loadedAt = new Date().toISOString();
    this.vectorsGauge.set({ collection: this.model.spec.collection }, next.size);
    this.vectorsLoaded.set(undefined, Date.now() / 1000);
    this.rebuildPopularity();
    void this.precompute(next);
  }

  /**
   * Computes every movie's neighbour list in a worker thread, the most watched first, so that
   * requests soon never scan; until then a request scans for a few missing sources itself.
   */
  private async precompute(index: VectorIndex): Promise<void> {
    let first: string[] = [];
    try {
      first = (await mostWatched(this.pool, 5000)).map(([id]) => id);
    } catch {
      first = this.popular;
    }
    if (this.index !== index) return;
    const started = performance.now();
    this.neighbourState = { state: 'computing', seconds: null };
    try {
      await index.precompute(first, neighbourCount(this.model.spec), () => this.index !== index || this.stopped);
      if (this.index === index) this.neighbourState = { state: 'ready', seconds: Math.round(performance.now() - started) / 1000 };
    } catch (err) {
      this.errors.inc({ kind: 'internal' });
      this.neighbourState = { state: 'failed', seconds: null };
      console.error(`inference: neighbour precompute failed: ${message(err)}`);
    }
  }

  // ---- popular and cold-start lists ------------------------------------------------------

  private rebuildPopularity(): void {
    const merged = mergePopularity(this.index ? this.index.popularities() : [], this.catalogPops);
    this.popularity = merged.table;
    if (merged.size > 0) this.popular = merged.popular;
  }

  private async listsLoop(): Promise<void> {
    try {
      await this.refreshLists();
      this.listsState.lastError = null;
      this.listsState.refreshedAt = new Date().toISOString();
      this.listsGauge.set(undefined, Date.now() / 1000);
    } catch (err) {
      this.errors.inc({ kind: 'postgres' });
      this.listsState.lastError = message(err);
    }
    this.later(() => this.listsLoop(), this.listsState.refreshedAt === null ? Math.min(this.opts.listsRefreshMs, 2000) : this.opts.listsRefreshMs);
  }

  private async refreshLists(): Promise<void> {
    // Incremental: only rows fetched since the last look (a minute of overlap covers late commits),
    // with a full read now and then; re-ranking the table costs tens of ms, so only on change.
    const full = Date.now() - this.catalogFullAt > CATALOG_FULL_MS;
    const since = full || this.catalogLatest === null ? null : new Date(this.catalogLatest.getTime() - 60_000);
    const { rows, latest } = await catalogPopularity(this.pool, since);
    let changed = full;
    if (full) {
      this.catalogPops = new Map(rows);
      this.catalogFullAt = Date.now();
    } else {
      for (const [id, p] of rows) if (this.catalogPops.get(id) !== p) { this.catalogPops.set(id, p); changed = true; }
    }
    this.catalogLatest = latest;
    if (changed) this.rebuildPopularity();
    if (this.popular.length < LIST_SIZE) this.popular = padPopular(this.popular, (await mostWatched(this.pool, 100)).map(([id]) => id));
    const spec = this.model.spec;
    const cs = spec.params.coldStart;
    const recent = cs.kind === 'recent' ? await recentWatchCounts(this.pool, cs.windowHours, null, 100) : [];
    this.coldStart = coldStartList(cs, { popular: this.popular, recent });
    if (spec.rule === 'cowatch') {
      if (this.cowatch === null || Date.now() - this.cowatchBuiltAt > COWATCH_REBUILD_MS) {
        this.cowatch = await coWatchLists(this.pool, spec, null);
        this.cowatchBuiltAt = Date.now();
      } else {
        const starts = await recentStarts(this.pool, spec.params.popularityWindowHours, null);
        this.cowatch = { ...this.cowatch, recent: coWatchPrior(starts, this.cowatch.coWatch, spec.params.trendExponent) };
      }
    }
  }

  /**
   * The lists as of a past time, built from the activity before it (see lib/models/lists.ts),
   * kept for the last few times asked: evaluation and reproduction ask many users at one time.
   */
  private listsAt(asOf: Date): Promise<ServingLists> {
    const key = asOf.getTime();
    let p = this.asOfLists.get(key);
    if (!p) {
      if (this.asOfLists.size >= AS_OF_CACHE) this.asOfLists.delete(this.asOfLists.keys().next().value!);
      p = withTimeout(listsAsOf(this.pool, this.model.spec, asOf, AS_OF_BUILD_MS), AS_OF_BUILD_MS, `building the lists as of ${asOf.toISOString()}`);
      p.catch(() => this.asOfLists.delete(key));
      this.asOfLists.set(key, p);
    }
    return p;
  }

  /** The lists of a request now. */
  private listsNow(): ServingLists {
    return { popularity: this.popularity, popular: this.popular, coldStart: this.coldStart, ...(this.cowatch ?? {}) };
  }

  // ---- requests --------------------------------------------------------------------------

  /** The answer for a user, always within the deadline. */
  async recommend(userId: number, asOf: Date | null): Promise<Answer> {
    const started = performance.now();
    // A kept history needs no I/O: ranked at once, with no deadline to arm.
    const kept = asOf === null ? this.opts.historyCache?.peek(userId) : undefined;
    if (kept !== undefined) {
      this.historyReads.inc({ from: 'memory' });
      return this.counted(this.rankHistory(userId, kept, null, this.listsNow()), started);
    }
    // Lists as of a past time are built once per time, before the deadline starts: such requests
    // are evaluation and reproduction, and a faithful answer matters more there than a fast one.
    let lists: ServingLists;
    try {
      lists = asOf ? await this.listsAt(asOf) : this.listsNow();
    } catch (err) {
      this.errors.inc({ kind: 'postgres' });
      console.error(`inference: lists as of ${asOf!.toISOString()}: ${message(err)}`);
      // Today's cached list would hold movies that did not exist then: nothing is the faithful answer.
      return this.counted({ ids: [], outcome: 'fallback', reason: 'postgres' }, started);
    }
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<Answer>((resolve) => {
      timer = setTimeout(() => resolve(this.fallback('deadline', lists)), this.opts.deadlineMs);
    });
    let answer: Answer;
    try {
      answer = await Promise.race([this.answer(userId, asOf, lists), deadline]);
    } finally {
      clearTimeout(timer);
    }
    return this.counted(answer, started);
  }

  private counted(answer: Answer, started: number): Answer {
    if (answer.outcome === 'fallback') this.fallbacks.inc({ reason: answer.reason! });
    this.latency.observe({ outcome: answer.outcome }, (performance.now() - started) / 1000);
    return answer;
  }

  /** The cached list of the request's time (for asOf, the cold-start list of then). */
  private fallback(reason: FallbackReason, lists: ServingLists): Answer {
    return { ids: lists.coldStart.length > 0 ? lists.coldStart.slice(0, LIST_SIZE) : lists.popular.slice(0, LIST_SIZE), outcome: 'fallback', reason };
  }

  private async answer(userId: number, asOf: Date | null, lists: ServingLists): Promise<Answer> {
    let history: readonly HistoryEntry[];
    try {
      const read = () => readHistory(this.pool, userId, asOf, { timeoutMs: Math.max(this.opts.deadlineMs * 4, 2000) });
      const cache = this.opts.historyCache;
      history = await (asOf === null && cache !== undefined ? cache.load(userId, read) : read());
      if (asOf === null) this.historyReads.inc({ from: 'postgres' });
    } catch (err) {
      this.errors.inc({ kind: 'postgres' });
      if (this.errors.get({ kind: 'postgres' }) % 100 === 1) console.error(`inference: postgres: ${message(err)}`);
      return this.fallback('postgres', lists);
    }
    return this.rankHistory(userId, history, asOf, lists);
  }

  private rankHistory(userId: number, history: readonly HistoryEntry[], asOf: Date | null, lists: ServingLists): Answer {
    const coldStart = lists.coldStart;
    try {
      const index = this.index;
      const spec = this.model.spec;
      if (history.length > 0 && usesVectors(spec) && (index === null || index.size === 0)) {
        // No vectors yet: the cold-start list, minus what the user has seen if the model says so.
        const seen = new Set(history.map((h) => h.movieId));
        const ids = spec.params.excludeWatched ? coldStart.filter((id) => !seen.has(id)).concat(lists.popular.filter((id) => !seen.has(id))) : coldStart;
        return { ids: [...new Set(ids)].slice(0, LIST_SIZE), outcome: 'fallback', reason: 'vectors_unavailable' };
      }
      const idx = index ?? VectorIndex.empty();
      const k = neighbourCount(spec);
      // Sources whose neighbours are not cached yet (the precompute is still running): the most
      // recent few are scanned now, in one pass; the rest are left out of this answer.
      const missing = selectSources(history, spec.params.maxSources).map((h) => h.movieId).filter((id) => !idx.isCached(id, k));
      if (missing.length > 0) idx.warm(missing.slice(0, Math.max(1, Math.floor(SCAN_BUDGET / Math.max(1, idx.size * idx.dim)))), k);
      const ranked = rankWithLists(spec, lists, {
        history,
        neighbours: (id, n) => (idx.isCached(id, n) ? idx.neighbours(id, n) : []),
        space: idx,
        now: asOf?.getTime() ?? Date.now(),
      });
      return { ids: ranked.ids, outcome: ranked.source };
    } catch (err) {
      this.errors.inc({ kind: 'internal' });
      console.error(`inference: ranking failed for user ${userId}: ${(err as Error).stack}`);
      return this.fallback('internal', lists);
    }
  }

  countBadRequest(): void {
    this.badRequests.inc();
  }

  health(): Record<string, unknown> {
    const { spec } = this.model;
    return {
      vectors: {
        ...this.vectorState,
        collection: spec.collection,
        count: this.index?.size ?? 0,
        dim: this.index?.dim ?? 0,
        cachedNeighbourLists: this.index?.cachedNeighbourLists ?? 0,
        neighbours: this.neighbourState,
      },
      lists: {
        ...this.listsState, coldStart: this.coldStart.length, popular: this.popular.length, asOfCached: this.asOfLists.size,
        ...(spec.rule === 'cowatch' ? { coWatchMovies: this.cowatch?.coWatch.size ?? 0, coWatchUsers: this.cowatch?.coWatch.users ?? 0, coWatchBuiltAt: this.cowatchBuiltAt ? new Date(this.cowatchBuiltAt).toISOString() : null } : {}),
      },
      // Serving goes on in these cases, but from popularity only until vectors (or co-watches) arrive.
      history: this.opts.historyCache?.stats ?? { state: 'off' },
      degraded: (usesVectors(spec) && this.vectorState.state !== 'ready') || this.listsState.refreshedAt === null || (spec.rule === 'cowatch' && this.cowatch === null),
      fallbacks: Object.fromEntries((['deadline', 'postgres', 'vectors_unavailable', 'internal'] as const).map((r) => [r, this.fallbacks.get({ reason: r })])),
    };
  }
}
