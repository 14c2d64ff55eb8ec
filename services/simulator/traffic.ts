/**
 * The live traffic loop: the simulated platform's users, in real time (or faster), writing their
 * log lines to a sink (Kafka in the service) at a target rate, and asking the gateway for
 * recommendations over HTTP as the course platform does.
 *
 * Time: lines carry simulated time, which runs `speed` times faster than the wall clock from
 * `startMs` (now by default), so a test can watch hour-long sessions finish in seconds.
 * Rate: most lines are the minutes of sessions in progress, so the loop paces the *start* of new
 * activities (Poisson arrivals at rate / mean lines per activity, the mean estimated from the
 * behaviour at start) and tunes in to a platform already running (sessions in progress at random
 * minutes, as many as the rate needs), so the output is at the target from the first second. The
 * recent output error speeds new starts up or slows them down to hold the rate. Events
 * already due (the next minute of a session) always go out on time. A user watches one thing at a
 * time, so at speed 1 the rate cannot pass about (users × 0.9) / 60 lines/s.
 *
 * In the replay world (`replay` instead of `world`) there is no rate to hold: the data set says
 * when each user comes back (replay-engine.ts), log time is the wall clock, and the loop only runs
 * what is due and asks the gateway; it stops by itself when every rating has been replayed.
 */
import http from 'node:http';
import { hash32, Rng } from '../../lib/random.ts';
import type { EventKind } from '../../lib/events/types.ts';
import { latencyBuckets, Registry } from '../../lib/metrics.ts';
import { javaErrorText, malformedLine, type BehaviourOptions } from './behaviour.ts';
import { Engine, type EngineStats, type RecAnswer } from './engine.ts';
import { ReplayEngine, type ReplayOptions } from './replay-engine.ts';
import type { ReplayClock, ReplayWorld } from './replay-world.ts';
import type { LineSink } from './sink.ts';
import type { World } from './world.ts';

export interface ReplayTraffic extends ReplayOptions {
  world: ReplayWorld;
  clock: ReplayClock;
}

export interface TrafficOptions {
  /** The invented world; or `replay` for a data set's users (exactly one of the two). */
  world?: World;
  replay?: ReplayTraffic;
  sink: LineSink;
  seed?: number;
  /** Target output in lines per real second. */
  rate?: number;
  /** Simulated milliseconds per real millisecond (invented world; the replay clock has its own). */
  speed?: number;
  /** Simulated time at start (epoch ms); now by default. */
  startMs?: number;
  /** Base URL of the gateway, e.g. http://127.0.0.1:8082; null: no recommendation requests. */
  gateway?: string | null;
  /** Budget of one recommendation request, as on the course platform. */
  timeoutMs?: number;
  /** Share of malformed lines to inject among the lines written. */
  malformedFraction?: number;
  /** Stop after this many lines written (malformed included). */
  maxLines?: number;
  /** Stop after this many recommendation requests (and wait for their answers). */
  maxRequests?: number;
  /** Stop after this much real time (ms). */
  durationMs?: number;
  /** Most recommendation requests in flight; past it no new activity starts until answers come. */
  maxInFlight?: number;
  /**
   * When maxLines or maxRequests is reached, let the activities in progress finish (sessions to
   * their last minute, pending ratings) before stopping. For tests that compare whole sessions.
   */
  drain?: boolean;
  /** Lines queued in the sink past which no new activity starts (Kafka slow or down). */
  maxBacklog?: number;
  behaviour?: Partial<BehaviourOptions>;
  /** Start with sessions already in progress (default true); false starts from an empty platform. */
  prefill?: boolean;
  /** Metrics go here (the service's /metrics); a private registry by default. */
  registry?: Registry;
}

export interface TrafficStats {
  engine: EngineStats;
  /** Lines handed to the sink, malformed included. */
  written: number;
  malformed: number;
  recOk: number;
  /** Answers with an HTTP status other than 2xx. */
  recHttpError: number;
  /** No answer within the budget, or a connection error (status 0 lines). */
  recFailed: number;
  /** Requests not made because the loop was stopping or draining (the user looked by themself). */
  recSkipped: number;
  inFlight: number;
}

const BUDGET_MEMORY_MS = 10_000;
const EVENTS_PER_TURN = 5000;

/** Simulated time: `speed` times the wall clock, from `startMs`. */
export class SimClock {
  private readonly real0 = performance.now();
  constructor(readonly startMs: number, readonly speed: number) {}
  now(): number {
    return Math.floor(this.startMs + (performance.now() - this.real0) * this.speed);
  }
}

/** host:port of a base URL, as the course platform writes the server in its request lines. */
export function serverOf(base: string): string {
  const u = new URL(base);
  return `${u.hostname}:${u.port || (u.protocol === 'https:' ? '443' : '80')}`;
}

/** One line of a body, without what would break a log line (newlines, NUL). */
function oneLine(s: string, max = 300): string {
  return s.replace(/[\r\n]+/g, ' ').replaceAll('\u0000', ' ').trim().slice(0, max);
}

export class Traffic {
  readonly engine: Engine | ReplayEngine;
  readonly clock: SimClock;
  readonly registry: Registry;
  readonly done: Promise<void>;
  private resolveDone!: () => void;
  private readonly opts: Required<Pick<TrafficOptions, 'rate' | 'timeoutMs' | 'malformedFraction' | 'maxInFlight' | 'maxBacklog'>> & TrafficOptions;
  private readonly rng: Rng;
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 128 });
  private readonly server: string;
  private budget = 0;
  /** Activities owed to the arrival process, started as soon as nothing holds them back. */
  private startCredit = 0;
  /** New activities per real second. */
  readonly startsPerSecond: number;
  readonly linesPerActivity: number;
  private lastReal = 0;
  private startedReal = 0;
  private timer: NodeJS.Timeout | null = null;
  private stopping = false;
  private stopped: Promise<void> | null = null;
  private inFlight = 0;
  private inFlightDrained: (() => void) | null = null;
  private written = 0;
  private malformed = 0;
  private rec = { ok: 0, httpError: 0, failed: 0, skipped: 0 };
  private readonly m: {
    lines: ReturnType<Registry['counter']>;
    requests: ReturnType<Registry['counter']>;
    latency: ReturnType<Registry['histogram']>;
    sessions: ReturnType<Registry['gauge']>;
    active: ReturnType<Registry['gauge']>;
    backlog: ReturnType<Registry['gauge']>;
    acked: ReturnType<Registry['gauge']>;
  };

  constructor(opts: TrafficOptions) {
    // Options given as undefined take the default too (a plain spread would keep the undefined).
    const given = Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) as TrafficOptions;
    this.opts = { rate: 100, timeoutMs: 600, malformedFraction: 0, maxInFlight: 128, maxBacklog: 50_000, ...given };
    if (!(this.opts.rate > 0)) throw new Error(`rate must be positive, got ${this.opts.rate}`);
    if ((opts.world === undefined) === (opts.replay === undefined)) throw new Error('traffic needs either an invented world or a replay, not both or neither');
    const speed = opts.replay ? 1 : opts.speed ?? 1;
    if (!(speed > 0)) throw new Error(`speed must be positive, got ${speed}`);
    const seed = opts.seed ?? opts.world?.seed ?? 0;
    this.rng = new Rng(hash32(seed, 20));
    this.clock = new SimClock(opts.startMs ?? Date.now(), speed);
    this.server = opts.gateway ? serverOf(opts.gateway) : '';
    this.registry = opts.registry ?? new Registry();
    const r = this.registry;
    this.m = {
      lines: r.counter('simulator_lines_total', 'Lines written to Kafka by kind (malformed = injected bad lines)', ['kind']),
      requests: r.counter('simulator_recommendation_requests_total', 'Recommendation requests by outcome', ['outcome']),
      latency: r.histogram('simulator_recommendation_latency_seconds', 'Recommendation request latency seen by the platform', latencyBuckets),
      sessions: r.gauge('simulator_sessions', 'Watch sessions started, by how the movie was found', ['source']),
      active: r.gauge('simulator_active_users', 'Users with an activity in progress'),
      backlog: r.gauge('simulator_sink_backlog', 'Lines written but not yet acknowledged by Kafka'),
      acked: r.gauge('simulator_lines_acked', 'Lines acknowledged by Kafka'),
    };
    const hooks = {
      emit: (user: number, line: string, kind: EventKind) => this.write(user, line, kind),
      recommend: opts.gateway ? (user: number, t: number) => this.recommend(user, t) : undefined,
    };
    this.done = new Promise((resolve) => { this.resolveDone = resolve; });
    if (opts.replay) {
      const { world, clock, ...replayOptions } = opts.replay;
      this.engine = new ReplayEngine(world, clock, new Rng(hash32(seed, 21)), hooks, replayOptions);
      this.linesPerActivity = 0;
      this.startsPerSecond = 0;
    } else {
      const engine = new Engine(opts.world!, new Rng(hash32(seed, 21)), hooks, opts.behaviour);
      this.engine = engine;
      this.linesPerActivity = engine.estimateLinesPerActivity(2000, opts.gateway != null);
      this.startsPerSecond = this.opts.rate / this.linesPerActivity;
    }
  }

  start(): void {
    if (this.startedReal !== 0) return;
    this.startedReal = this.lastReal = performance.now();
    // In steady state each session in progress writes one line per simulated minute, so the rate
    // needs rate × 60 s / speed of them (Little's law); that many are already running at start.
    if (this.engine instanceof Engine && this.opts.prefill !== false) this.engine.prefill(this.clock.now(), Math.round((this.opts.rate * 60) / this.clock.speed));
    this.timer = setTimeout(this.tick, 0);
  }

  /** Stops starting activities, waits for requests in flight (≤ the timeout), flushes the sink. */
  stop(): Promise<void> {
    this.stopped ??= (async () => {
      this.stopping = true;
      if (this.timer) { clearTimeout(this.timer); this.timer = null; }
      if (this.inFlight > 0) await new Promise<void>((resolve) => { this.inFlightDrained = resolve; });
      await this.opts.sink.flush();
      this.agent.destroy();
      this.updateGauges();
      this.resolveDone();
    })();
    return this.stopped;
  }

  get stats(): TrafficStats {
    return {
      engine: structuredClone(this.engine.stats), written: this.written, malformed: this.malformed,
      recOk: this.rec.ok, recHttpError: this.rec.httpError, recFailed: this.rec.failed, recSkipped: this.rec.skipped,
      inFlight: this.inFlight,
    };
  }

  private tick = (): void => {
    this.timer = null;
    if (this.stopping) return;
    const o = this.opts;
    const real = performance.now();
    const dt = real - this.lastReal;
    this.lastReal = real;
    // Output error, as a leaky integral (10 s memory): lines owed (positive) or ahead (negative).
    // It scales the arrival rate of new activities (a proportional controller), so a small lasting
    // error, such as the warm start running a little hot, slows new starts a little instead of
    // stopping them until the deficit is paid back.
    this.budget = this.budget * Math.exp(-dt / BUDGET_MEMORY_MS) + (dt * o.rate) / 1000;
    const relativeError = this.budget / ((o.rate * BUDGET_MEMORY_MS) / 1000);
    const pace = Math.min(3, Math.max(0, 1 + 5 * relativeError));
    this.startCredit = Math.min(this.startCredit + (dt * this.startsPerSecond * pace) / 1000, Math.max(2, this.startsPerSecond / 2));
    const now = this.clock.now();
    // A bounded slice of due events per turn, so that recommendation answers (and /healthz) get
    // the event loop often enough; what is left runs on the next turn, right away, with its own
    // simulated timestamps (a busy process writes a little late, never out of order).
    this.engine.runUntil(now, EVENTS_PER_TURN);
    const behind = this.engine.nextTime() <= now;
    let started = 0;
    while (
      this.engine instanceof Engine &&
      this.startCredit >= 1 && started < 5000 && !this.limitReached() &&
      this.inFlight < o.maxInFlight && this.opts.sink.backlog() < o.maxBacklog
    ) {
      if (!this.engine.beginActivity(now)) break;
      this.startCredit--;
      started++;
    }
    this.updateGauges();
    const draining = o.drain === true && (this.engine.active.size > 0 || this.inFlight > 0);
    const replayed = this.engine instanceof ReplayEngine && this.engine.finished && this.inFlight === 0;
    if ((this.limitReached() && !draining) || replayed || (o.durationMs !== undefined && real - this.startedReal >= o.durationMs)) {
      void this.stop();
      return;
    }
    this.timer = setTimeout(this.tick, behind ? 0 : 10);
  };

  private limitReached(): boolean {
    const o = this.opts;
    return (o.maxLines !== undefined && this.written >= o.maxLines) ||
      (o.maxRequests !== undefined && this.engine.stats.recRequests >= o.maxRequests);
  }

  private write(user: number, line: string, kind: EventKind): void {
    const key = String(user);
    this.opts.sink.write(key, line);
    this.written++;
    this.budget--;
    this.m.lines.inc({ kind });
    if (this.opts.malformedFraction > 0 && this.rng.chance(this.opts.malformedFraction)) {
      const bad = malformedLine(this.opts.world ?? this.opts.replay!.world, this.rng, this.clock.now());
      this.opts.sink.write(key, bad.line);
      this.written++;
      this.malformed++;
      this.budget--;
      this.m.lines.inc({ kind: 'malformed' });
    }
  }

  private recommend(user: number, t: number): boolean {
    // The replay's users come back when the data says, not when answers allow: past the limit of
    // requests in flight they go on without one (counted as skipped) instead of waiting.
    const saturated = this.engine instanceof ReplayEngine && this.inFlight >= this.opts.maxInFlight;
    if (this.stopping || this.limitReached() || saturated) {
      this.rec.skipped++;
      this.m.requests.inc({ outcome: 'skipped' });
      return false;
    }
    this.inFlight++;
    // The request line is written when the answer comes; charge the bucket for it now.
    this.budget--;
    const started = performance.now();
    let finished = false;
    let timedOut = false;
    const finish = (status: number, body: string, err: unknown) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      const latencyMs = Math.round(performance.now() - started);
      let ans: RecAnswer;
      if (err !== null || status === 0) {
        ans = { server: this.server, status: 0, movieIds: [], error: javaErrorText(err, this.server, timedOut), latencyMs };
        this.rec.failed++;
        this.m.requests.inc({ outcome: timedOut ? 'timeout' : 'error' });
      } else if (status >= 200 && status < 300) {
        const ids = oneLine(body, 100_000).split(',').map((s) => s.trim()).filter((s) => s.length > 0);
        ans = { server: this.server, status, movieIds: ids, error: null, latencyMs };
        this.rec.ok++;
        this.m.requests.inc({ outcome: 'ok' });
      } else {
        ans = { server: this.server, status, movieIds: [], error: oneLine(body) || `HTTP ${status}`, latencyMs };
        this.rec.httpError++;
        this.m.requests.inc({ outcome: 'http_error' });
      }
      this.m.latency.observe(undefined, latencyMs / 1000);
      this.budget++; // charged up front; write() charges it again
      this.engine.answer(user, t, ans, Math.max(t, this.clock.now()));
      this.inFlight--;
      if (this.inFlight === 0 && this.inFlightDrained) this.inFlightDrained();
    };
    const req = http.get(`${this.opts.gateway!.replace(/\/+$/, '')}/recommend/${user}`, { agent: this.agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
        if (body.length > 1_000_000) req.destroy(new Error('answer too large'));
      });
      res.on('end', () => finish(res.statusCode ?? 0, body, null));
      res.on('error', (e) => finish(0, '', e));
      res.on('aborted', () => finish(0, '', new Error('connection aborted')));
    });
    req.on('error', (e) => finish(0, '', e));
    const timer = setTimeout(() => {
      timedOut = true;
      req.destroy(new Error('read timed out'));
    }, this.opts.timeoutMs);
    return true;
  }

  private updateGauges(): void {
    const s = this.engine.stats;
    this.m.sessions.set({ source: 'recommended' }, s.recommendedSessions);
    this.m.sessions.set({ source: 'discovered' }, s.discoveredSessions);
    this.m.active.set(undefined, this.engine.active.size);
    this.m.backlog.set(undefined, this.opts.sink.backlog());
    this.m.acked.set(undefined, this.opts.sink.produced());
  }
}
