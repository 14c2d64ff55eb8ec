/**
 * The public endpoint: GET /recommend/<userid> goes to the user's sticky slot and never fails a valid
 * request. Per request the only work besides the upstream call is a hash and two array pushes; all
 * database writes (history, assignments) happen in batches on timers.
 *
 * Time budget (the contract allows 600 ms): nightly gets `nightlyBudgetMs`; main, whether first
 * choice or fallback, must answer before `mainDeadlineMs` from arrival; after that the popular list
 * is served at once, leaving the rest of the 600 ms as margin for the network and the event loop.
 * Besides the per-call timers, one deadline timer armed at arrival answers the popular list at
 * `answerDeadlineMs` whatever the upstream calls are doing, so no chain of waits can add up past it.
 *
 * Under contention (neighbours on the same cores) work is shed before answers are: a slot that
 * already has `maxPendingPerUrl` calls in flight gets no more (the user gets the popular list at
 * once, counted as a `<slot>_busy` fallback) so an overloaded slot is not buried deeper while the
 * gateway's own queue stays short; history rows are written in small batches (each COPY is
 * serialised on the event loop) and dropped only past a bounded buffer, counted.
 */
import http, { type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import express from 'express';
import type { Pool } from '../../lib/db.ts';
import { serviceApp } from '../../lib/http.ts';
import { latencyBuckets, Registry } from '../../lib/metrics.ts';
import { parseUserId, routingEndpoints, slotFor, SLOTS, type RoutingEndpoints, type RoutingState, type Slot } from '../../lib/routing.ts';
import { gitCommit, packageVersion } from '../../lib/version.ts';
import { adminRouter } from './admin.ts';
import { BatchWriter } from './batch.ts';
import { HealthChecker, probe } from './health.ts';
import { writeAssignments, writeServed, type AssignmentRow, type ServedRow } from './history.ts';
import { PopularList } from './popular.ts';
import { initState, loadState, routingFields } from './state.ts';
import { answerIds, checkAnswer, UpstreamError, Upstreams } from './upstream.ts';

export interface GatewayOptions {
  adminToken: string;
  /** Where main is on a database that has no routing state yet. */
  initialMainUrl: string;
  nightlyBudgetMs: number;
  mainDeadlineMs: number;
  /** From arrival to the popular list at the latest, whatever the upstreams do (the contract's 600 ms minus a margin). */
  answerDeadlineMs: number;
  /** Calls in flight to one slot URL beyond which the gateway answers the popular list at once. */
  maxPendingPerUrl: number;
  flushIntervalMs: number;
  flushRows: number;
  healthIntervalMs: number;
  statePollMs: number;
  popularRefreshMs: number;
  log: (message: string) => void;
}

export const defaultOptions = (): Omit<GatewayOptions, 'adminToken' | 'initialMainUrl'> => ({
  nightlyBudgetMs: 200,
  mainDeadlineMs: 400,
  answerDeadlineMs: 450,
  maxPendingPerUrl: 32,
  flushIntervalMs: 200,
  flushRows: 500,
  healthIntervalMs: 1000,
  statePollMs: 1000,
  popularRefreshMs: 60_000,
  log: (m) => console.log(`gateway: ${m}`),
});

/** `ids` only where they are at hand (the popular list); a slot's body is sent as it came and split after. */
type Answer = { ok: true; body: string; contentType: string; ids?: string[]; outcome?: string };
type Outcome = Answer | { ok: false; reason: string };

/** Versions come from admins and /healthz answers: a character Node refuses in a header must not fail a request. */
const headerSafe = (v: string): string => (/^[\x20-\x7e]*$/.test(v) ? v : v.replace(/[^\x20-\x7e]/g, '?'));

/** Who can produce an answer: a slot, or the popular list. */
const ANSWERERS = [...SLOTS, 'popular'] as const;

/** `make(key)` for every key, as a record (the request path then indexes it, no map lookup or labels object). */
function perSlot<K extends string, F>(keys: readonly K[], make: (key: K) => F): Record<K, F> {
  return Object.fromEntries(keys.map((k) => [k, make(k)])) as Record<K, F>;
}

/** Most distinct users remembered per release to avoid re-sending assignments; past it the set restarts (the insert ignores repeats). */
const MAX_SEEN = 2_000_000;
/** Rows buffered per table while Postgres is away: ~30 min at 250 req/s, a few hundred MB at most. */
const MAX_PENDING_ROWS = 500_000;
/** Rows per write: each batch is serialised synchronously, so a large one (after an outage) would stall answers. */
const MAX_ROWS_PER_WRITE = 2000;

export class Gateway {
  readonly registry = new Registry();
  private readonly m = {
    requests: this.registry.counter('gateway_requests_total', 'Valid recommendation requests, by the slot the user is assigned to', ['slot']),
    answers: this.registry.counter('gateway_answers_total', 'Answers served, by who produced them (main, nightly, popular)', ['slot']),
    badRequests: this.registry.counter('gateway_bad_requests_total', 'Requests refused with 400 (invalid user id)'),
    errors: this.registry.counter('gateway_upstream_errors_total', 'Failed upstream calls, by slot and kind (timeout, refused, error, status, bad_answer, down)', ['slot', 'kind']),
    fallbacks: this.registry.counter('gateway_fallbacks_total', 'Answers not served by the assigned slot, by from, to and reason', ['from', 'to', 'reason']),
    latency: this.registry.histogram('gateway_request_duration_seconds', 'Time to answer, by who produced the answer', latencyBuckets, ['slot']),
    upstreamLatency: this.registry.histogram('gateway_upstream_duration_seconds', 'Upstream call time, by slot (successful calls)', latencyBuckets, ['slot']),
    assigned: this.registry.gauge('gateway_assigned_users', 'Distinct users this process has assigned in the current release, by slot', ['slot']),
    written: this.registry.counter('gateway_rows_written_total', 'Rows written in batches, by table (user_assignments counts rows sent; repeats are ignored there)', ['table']),
    pending: this.registry.gauge('gateway_write_pending', 'Rows waiting to be written, by table', ['table']),
    dropped: this.registry.gauge('gateway_write_dropped', 'Rows dropped because the bounded write buffer was full (a long database outage), by table', ['table']),
    deadlines: this.registry.counter('gateway_deadline_answers_total', 'Answers given by the arrival deadline timer while an upstream call was still pending'),
    writeFailures: this.registry.counter('gateway_write_failures_total', 'Failed batch writes (retried), by table', ['table']),
    slotUp: this.registry.gauge('gateway_slot_up', '1 when the slot passes its health checks, by slot', ['slot']),
    percent: this.registry.gauge('gateway_nightly_percent', 'Configured share of users in nightly'),
    loopDelay: this.registry.gauge('gateway_event_loop_delay_seconds', 'Event-loop delay over the last second (p99 and max): time requests wait before the gateway sees them', ['quantile']),
    replicaRetries: this.registry.counter('gateway_replica_retries_total', 'Calls retried on another replica of the same slot after one failed, by slot', ['slot']),
    routingChanges: this.registry.counter('gateway_routing_changes_total', 'Routing changes applied through this process or picked up from Postgres'),
  };

  /**
   * Series the request path updates, bound once per slot (no labels object or series key per
   * request); answers and their time also for the popular list. Binding creates no series: one
   * appears in /metrics on its first update, as before.
   */
  private readonly hot = {
    requests: perSlot(SLOTS, (slot) => this.m.requests.bind({ slot })),
    answers: perSlot(ANSWERERS, (slot) => this.m.answers.bind({ slot })),
    latency: perSlot(ANSWERERS, (slot) => this.m.latency.bind({ slot })),
    upstreamLatency: perSlot(SLOTS, (slot) => this.m.upstreamLatency.bind({ slot })),
  };

  private state!: RoutingState;
  /** The endpoint lists of `state`, recomputed in setState only: the request path reads them, never builds them. */
  private endpoints!: RoutingEndpoints;
  private seen = new Map<number, Slot>();
  private readonly upstreams = new Upstreams();
  private readonly health: HealthChecker;
  private readonly popular: PopularList;
  private readonly history: BatchWriter<ServedRow>;
  private readonly assignments: BatchWriter<AssignmentRow>;
  private server?: Server;
  private pollTimer?: NodeJS.Timeout;
  private inFlight = 0;

  constructor(private readonly pool: Pool, readonly opts: GatewayOptions) {
    this.health = new HealthChecker(this.upstreams, () => this.routedUrls(), {
      intervalMs: opts.healthIntervalMs, timeoutMs: Math.min(500, opts.healthIntervalMs), failuresToDown: 2,
      onChange: (url, up, why) => { opts.log(`${url} is ${up ? 'up' : 'down'} (${why})`); this.updateGauges(); },
    });
    this.popular = new PopularList(pool, { refreshMs: opts.popularRefreshMs, log: opts.log });
    const onError = (table: string) => (err: Error) => { this.m.writeFailures.inc({ table }); opts.log(`writing ${table} failed, will retry: ${err.message}`); };
    this.history = new BatchWriter('served_recommendations', writeServed(pool), {
      intervalMs: opts.flushIntervalMs, maxBatch: opts.flushRows, maxPending: MAX_PENDING_ROWS, maxPerWrite: MAX_ROWS_PER_WRITE, onError: onError('served_recommendations'),
    });
    this.assignments = new BatchWriter('user_assignments', writeAssignments(pool), {
      intervalMs: opts.flushIntervalMs, maxBatch: opts.flushRows, maxPending: MAX_PENDING_ROWS, maxPerWrite: MAX_ROWS_PER_WRITE, onError: onError('user_assignments'),
    });
  }

  private routedUrls(): readonly string[] {
    return this.endpoints.all;
  }

  /** A slot is up while any of its replicas is. */
  private slotIsUp(slot: Slot): boolean {
    for (const u of this.endpoints[slot]) if (this.health.isUp(u)) return true;
    return false;
  }

  current(): RoutingState {
    return this.state;
  }

  /** Installs a routing state; requests that arrive after this use it, those in flight finish on the old one. */
  setState(next: RoutingState, why: string): void {
    const prev = this.state;
    if (prev && new Date(next.updatedAt) < new Date(prev.updatedAt)) return;
    this.state = next;
    this.endpoints = routingEndpoints(next);
    if (!prev || prev.releaseId !== next.releaseId) this.seen = new Map();
    if (prev) {
      this.m.routingChanges.inc();
      this.opts.log(`routing changed (${why}): ${JSON.stringify(routingFields(next))}`);
    }
    this.updateGauges();
  }

  private updateGauges(): void {
    const s = this.state;
    this.m.percent.set(undefined, s.nightlyUrl ? s.nightlyPercent : 0);
    this.m.slotUp.set({ slot: 'main' }, this.slotIsUp('main') ? 1 : 0);
    if (s.nightlyUrl) this.m.slotUp.set({ slot: 'nightly' }, this.slotIsUp('nightly') ? 1 : 0);
  }

  /** Reads the routing state from Postgres, creating it (main only) on a fresh database. */
  async loadRouting(): Promise<RoutingState> {
    let state = await loadState(this.pool);
    if (!state) {
      const p = await probe(this.upstreams, this.opts.initialMainUrl, 2000);
      state = await initState(this.pool, { mainUrl: this.opts.initialMainUrl, mainVersion: (p.ok && p.version) || 'unknown' }, 'gateway (initial state)');
      this.opts.log(`no routing state in Postgres: created one with main at ${state.mainUrl}`);
    }
    this.setState(state, 'loaded');
    return state;
  }

  async start(port: number, host = '127.0.0.1'): Promise<Server> {
    if (!this.state) await this.loadRouting();
    this.health.start();
    await this.popular.start();
    this.history.start();
    this.assignments.start();
    this.loop.enable();
    this.pollTimer = setInterval(() => void this.pollState(), this.opts.statePollMs);
    this.pollTimer.unref();
    const app = this.app();
    // The hot path skips express's router (about a tenth of the gateway's CPU per request); every
    // other route, and any odd-looking /recommend URL, goes through express as usual.
    const server = http.createServer((req, res) => {
      if (req.method === 'GET' && req.url && req.url.startsWith('/recommend/')) {
        const rest = req.url.slice('/recommend/'.length).split('?')[0];
        if (rest.length > 0 && !rest.includes('/') && !rest.includes('%')) { void this.recommend(rest, res); return; }
      }
      app(req, res);
    });
    server.keepAliveTimeout = 65_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => { server.off('error', reject); resolve(); });
    });
    this.server = server;
    return server;
  }

  /** Picks up changes made through another gateway process sharing the database. */
  private readonly loop = monitorEventLoopDelay({ resolution: 10 });

  private async pollState(): Promise<void> {
    this.syncWriteMetrics();
    this.m.loopDelay.set({ quantile: '0.99' }, this.loop.percentile(99) / 1e9);
    this.m.loopDelay.set({ quantile: '1' }, this.loop.max / 1e9);
    this.loop.reset();
    try {
      const { rows } = await this.pool.query<{ updated_at: Date }>('SELECT updated_at FROM routing_state WHERE id = 1');
      if (rows[0] && rows[0].updated_at > new Date(this.state.updatedAt)) {
        const s = await loadState(this.pool);
        if (s) this.setState(s, 'changed in Postgres');
      }
    } catch { /* the database is away; keep routing as we were */ }
  }

  app(): express.Express {
    const app = serviceApp({ registry: this.registry, health: () => this.healthBody() });
    app.set('etag', false);
    app.get('/recommend/:id', (req: IncomingMessage & { params: { id: string } }, res: ServerResponse) => void this.recommend(req.params.id, res));
    app.use('/admin', adminRouter(this, this.pool, this.upstreams, this.opts));
    app.use((_req: express.Request, res: express.Response) => { res.status(404).type('text/plain').send('not found'); });
    return app;
  }

  private healthBody(): Record<string, unknown> {
    this.syncWriteMetrics();
    const s = this.state;
    const one = (url: string) => ({ url, pending: this.upstreams.pending(url), ...(this.health.get(url) ?? { up: true, note: 'not checked yet' }) });
    const slot = (which: Slot) => {
      const urls = this.endpoints[which];
      return urls.length === 0 ? null : { ...one(urls[0]), replicas: urls.map(one) };
    };
    const down = !this.slotIsUp('main') || (s.nightlyUrl !== null && !this.slotIsUp('nightly'));
    return {
      status: 'ok', service: 'gateway', version: packageVersion, commit: gitCommit(), degraded: down,
      routing: { ...routingFields(s), updatedAt: s.updatedAt, updatedBy: s.updatedBy },
      slots: { main: slot('main'), nightly: slot('nightly') },
      inFlight: this.inFlight,
      writes: { served_recommendations: this.history.stats, user_assignments: this.assignments.stats },
      popular: { source: this.popular.source, size: this.popular.ids().length },
    };
  }

  private async recommend(raw: string, res: ServerResponse): Promise<void> {
    const t0 = performance.now();
    const servedAt = new Date();
    const parsed = parseUserId(raw);
    if (!parsed.ok) {
      this.m.badRequests.inc();
      res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8' }).end(parsed.reason);
      return;
    }
    this.inFlight++;
    const userId = parsed.id;
    const s = this.state;
    const ep = this.endpoints;
    const assigned = slotFor(userId, s.releaseId, s.nightlyUrl ? s.nightlyPercent : 0);
    this.hot.requests[assigned]();
    this.noteAssignment(s, userId, assigned, servedAt);

    const reasons: string[] = [];
    let by: Slot | 'popular' = assigned;
    // Armed at arrival: whatever the calls below are doing at answerDeadlineMs, they are aborted
    // then (their sockets closed, nothing late can change the answer) and the popular list goes out.
    const abort = new AbortController();
    let deadlineTimer!: NodeJS.Timeout;
    const deadline = new Promise<undefined>((resolve) => {
      // Whole milliseconds, rounded down: node keeps a timer list per distinct duration.
      deadlineTimer = setTimeout(() => { abort.abort(); resolve(undefined); }, Math.max(1, Math.floor(this.opts.answerDeadlineMs - (performance.now() - t0))));
    });
    const chain = async (signal: AbortSignal): Promise<Answer | undefined> => {
      if (assigned === 'nightly') {
        const r = await this.call('nightly', ep.nightly, userId, this.opts.nightlyBudgetMs, signal);
        if (signal.aborted) return undefined;
        if (r.ok) return r;
        reasons.push(r.reason);
      }
      by = 'main';
      const r = await this.call('main', ep.main, userId, this.opts.mainDeadlineMs - (performance.now() - t0), signal);
      if (signal.aborted) return undefined;
      if (r.ok) return r;
      reasons.push(r.reason);
      return undefined;
    };
    // call() turns every failure into an outcome; the catch only keeps a bug from leaving a request
    // unanswered, and the race the answer from waiting on anything the abort does not reach.
    const got = await Promise.race([chain(abort.signal).catch((err: Error) => { this.opts.log(`request path error: ${err.stack ?? err.message}`); return undefined; }), deadline]);
    clearTimeout(deadlineTimer);
    if (abort.signal.aborted && !got) {
      this.m.deadlines.inc();
      reasons.push(`${by}_deadline`);
    }
    let sent: Answer;
    if (!got) {
      by = 'popular';
      const ids = this.popular.ids();
      sent = { ok: true, body: ids.join(','), contentType: 'text/plain; charset=utf-8', ids };
    } else {
      sent = got;
    }
    const fallback = reasons.length ? reasons.join(',') : null;
    if (fallback) this.m.fallbacks.inc({ from: assigned, to: by, reason: reasons[reasons.length - 1] });
    const version = by === 'main' ? s.mainVersion : by === 'nightly' ? s.nightlyVersion : null;

    const headers: Record<string, string> = {
      'content-type': sent.contentType.startsWith('text/plain') ? sent.contentType : 'text/plain; charset=utf-8',
      'x-marquee-slot': by,
      'x-marquee-assigned': assigned,
    };
    if (version) headers['x-marquee-version'] = headerSafe(version);
    if (s.releaseId) headers['x-marquee-release'] = headerSafe(s.releaseId);
    if (fallback) headers['x-marquee-fallback'] = fallback;
    // Inference says whether it ranked or served its own cached list; pass that on for evaluation.
    if (sent.outcome) headers['x-marquee-outcome'] = sent.outcome;
    // A length rather than chunked encoding: headers and body go out as one string in one write.
    headers['content-length'] = String(Buffer.byteLength(sent.body));
    res.writeHead(200, headers).end(sent.body);

    const ms = performance.now() - t0;
    this.inFlight--;
    // After the answer is on its way: the ids for the history row and the popular list.
    const ids = sent.ids ?? answerIds(sent.body);
    if (got) this.popular.observe(ids);
    this.hot.answers[by]();
    this.hot.latency[by](ms / 1000);
    this.history.push({ servedAt, userId, slot: by, releaseId: s.releaseId, modelVersion: version, movieIds: ids, latencyMs: ms, fallback });
  }

  private turn = 0;

  /**
   * The replica to call: the healthy one with the fewest calls in flight (least-pending spreads a
   * slot's share by what each replica keeps up with), ties taken in turn; none when every one is
   * down, already tried, or at `maxPendingPerUrl` (then `busy` says why).
   */
  private pick(urls: readonly string[], tried: readonly number[]): { index: number } | { none: 'down' | 'busy' } {
    let best = -1;
    let least = Infinity;
    let anyUp = false;
    const start = this.turn++ % urls.length;
    for (let k = 0; k < urls.length; k++) {
      const i = (start + k) % urls.length;
      const u = urls[i];
      if (tried.includes(i) || !this.health.isUp(u)) continue;
      anyUp = true;
      const n = this.upstreams.pending(u);
      if (n < least && n < this.opts.maxPendingPerUrl) { best = i; least = n; }
    }
    if (this.turn > 1e9) this.turn = 0;
    return best >= 0 ? { index: best } : { none: anyUp ? 'busy' : 'down' };
  }

  /**
   * One slot's answer within `timeoutMs`, or why not (`<slot>_<kind>`, e.g. nightly_timeout). A
   * replica that fails fast (refused, reset, a bad status or answer) is followed, while time
   * remains, by another replica of the same slot: a replica killed under load costs no answer.
   */
  private async call(slot: Slot, urls: readonly string[], userId: number, timeoutMs: number, signal: AbortSignal): Promise<Outcome> {
    const t0 = performance.now();
    // Indexes into urls; a slot has a handful of replicas, so a linear scan beats a Set.
    const tried: number[] = [];
    let reason = `${slot}_down`;
    for (;;) {
      const left = timeoutMs - (performance.now() - t0);
      if (left < 1) {
        this.m.errors.inc({ slot, kind: 'timeout' });
        return { ok: false, reason: tried.length ? reason : `${slot}_timeout` };
      }
      const chosen = this.pick(urls, tried);
      if ('none' in chosen) {
        if (tried.length) return { ok: false, reason };
        this.m.errors.inc({ slot, kind: chosen.none });
        return { ok: false, reason: `${slot}_${chosen.none}` };
      }
      const url = urls[chosen.index];
      if (tried.length) this.m.replicaRetries.inc({ slot });
      tried.push(chosen.index);
      try {
        const a = await this.upstreams.get(url, `recommend/${userId}`, left, 'text/plain', signal);
        checkAnswer(a);
        this.hot.upstreamLatency[slot](a.ms / 1000);
        return { ok: true, body: a.body, contentType: a.contentType, outcome: a.outcome };
      } catch (err) {
        const kind = err instanceof UpstreamError ? err.kind : 'error';
        // Aborted at the answer deadline: a call that did not answer in the time it had, as a timeout.
        if (kind === 'aborted') {
          this.m.errors.inc({ slot, kind: 'timeout' });
          return { ok: false, reason: `${slot}_timeout` };
        }
        if (kind === 'refused') this.health.refused(url);
        this.m.errors.inc({ slot, kind });
        reason = `${slot}_${kind === 'refused' ? 'error' : kind}`;
        if (kind === 'timeout') return { ok: false, reason };
      }
    }
  }

  private noteAssignment(s: RoutingState, userId: number, slot: Slot, at: Date): void {
    if (!s.releaseId || this.seen.has(userId)) return;
    if (this.seen.size >= MAX_SEEN) this.seen = new Map();
    this.seen.set(userId, slot);
    this.m.assigned.set({ slot }, (this.m.assigned.get({ slot }) ?? 0) + 1);
    this.assignments.push({ releaseId: s.releaseId, userId, slot, assignedAt: at });
  }

  /** Counts for tests and /healthz. */
  writeStats(): { history: BatchWriter<ServedRow>['stats']; assignments: BatchWriter<AssignmentRow>['stats'] } {
    return { history: this.history.stats, assignments: this.assignments.stats };
  }

  private lastWritten = new Map<string, number>();
  /** Copies the writers' counts into the metrics (on the 1 s poll, so /metrics is at most a second behind). */
  private syncWriteMetrics(): void {
    for (const w of [this.history, this.assignments]) {
      this.m.pending.set({ table: w.name }, w.stats.pending);
      this.m.dropped.set({ table: w.name }, w.stats.dropped);
      const delta = w.stats.written - (this.lastWritten.get(w.name) ?? 0);
      if (delta > 0) this.m.written.inc({ table: w.name }, delta);
      this.lastWritten.set(w.name, w.stats.written);
    }
  }

  /** Graceful stop: stop accepting, let requests in flight answer, then write everything buffered. */
  async stop(): Promise<void> {
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.loop.disable();
    const server = this.server;
    if (server) {
      const closed = new Promise<void>((r) => server.close(() => r()));
      server.closeIdleConnections();
      const force = setTimeout(() => server.closeAllConnections(), 5000);
      await closed;
      clearTimeout(force);
    }
    this.health.stop();
    this.popular.stop();
    await Promise.all([this.history.stop(), this.assignments.stop()]);
    this.upstreams.close();
    if (this.history.stats.pending || this.assignments.stats.pending) {
      this.opts.log(`stopped with unwritten rows: ${this.history.stats.pending} history, ${this.assignments.stats.pending} assignments`);
    }
  }
}
