/**
 * The discrete-event core shared by the live traffic loop and the offline generator: users start
 * activities (an account creation, a recommendation request, a watch session minute by minute,
 * sometimes a rating), and events wait in a time-ordered queue until simulated time reaches them.
 * The caller owns time: the live loop runs the queue up to its simulated clock, the offline
 * generator jumps from event to event.
 *
 * A user has at most one activity at a time, so each user's lines come out in time order.
 */
import { atFromMs, formatEvent } from '../../lib/events/format.ts';
import type { EventKind } from '../../lib/events/types.ts';
import type { Rng } from '../../lib/random.ts';
import {
  chooseUser, defaultBehaviour, discoverMovie, MINUTE_MS, pickMostShown, pickRecommended, planSession, ratingFor,
  type BehaviourOptions,
} from './behaviour.ts';
import type { World } from './world.ts';

/** What the platform saw of one recommendation request. */
export interface RecAnswer {
  /** host:port as written in the line. */
  server: string;
  /** HTTP status, 0 when no answer came. */
  status: number;
  movieIds: string[];
  /** Error text (status 0, or a non-2xx answer that was not a list of ids); null otherwise. */
  error: string | null;
  latencyMs: number;
}

export interface EngineHooks {
  /** Every line the world produces, with the user it belongs to (the Kafka key). */
  emit(userId: number, line: string, kind: EventKind): void;
  /**
   * Asks for recommendations for `userId` at simulated time `t`. Returns false when no request can
   * be made (then the user looks by themself); otherwise the caller must later call
   * `engine.answer(...)` for this user exactly once.
   */
  recommend?: (userId: number, t: number) => boolean;
}

const enum Ev { Minute, Rate, Begin, Call }

interface QueuedEvent {
  t: number;
  seq: number;
  type: Ev;
  user: number;
  movie: number;
  minute: number;
  last: number;
  fromRec: boolean;
  call: (() => void) | null;
}

/** A binary min-heap on (t, seq): equal times come out in the order they were queued. */
export class EventQueue<E extends Timed = QueuedEvent> {
  private items: E[] = [];
  get size(): number { return this.items.length; }
  peekTime(): number { return this.items.length > 0 ? this.items[0].t : Infinity; }
  push(e: E): void {
    const a = this.items;
    a.push(e);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!less(e, a[p])) break;
      a[i] = a[p];
      i = p;
    }
    a[i] = e;
  }
  pop(): E | undefined {
    const a = this.items;
    if (a.length === 0) return undefined;
    const top = a[0];
    const last = a.pop()!;
    if (a.length > 0) {
      let i = 0;
      const n = a.length;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && less(a[r], a[l]) ? r : l;
        if (!less(a[c], last)) break;
        a[i] = a[c];
        i = c;
      }
      a[i] = last;
    }
    return top;
  }
}

const TWO = Array.from({ length: 100 }, (_, i) => String(i).padStart(2, '0'));
const THREE = Array.from({ length: 1000 }, (_, i) => String(i).padStart(3, '0'));
let dayStart = NaN;
let dayPrefix = '';

/**
 * atFromMs with the date part cached per day: Date#toISOString on every line was a third of the
 * offline generator's time. Same output (the tests compare them).
 */
export function fastAt(ms: number): { atIso: string; atMs: number } {
  const atMs = Math.trunc(ms);
  let rest = atMs - dayStart;
  if (!(rest >= 0 && rest < 86_400_000)) {
    const full = atFromMs(atMs);
    dayStart = atMs - (atMs % 86_400_000 + 86_400_000) % 86_400_000;
    dayPrefix = full.atIso.slice(0, 11);
    rest = atMs - dayStart;
  }
  const h = Math.floor(rest / 3_600_000);
  const m = Math.floor(rest / 60_000) % 60;
  const s = Math.floor(rest / 1000) % 60;
  return { atIso: `${dayPrefix}${TWO[h]}:${TWO[m]}:${TWO[s]}.${THREE[rest % 1000]}Z`, atMs };
}

/** What EventQueue orders by: time, then the order of queueing. */
export interface Timed { t: number; seq: number }

function less(x: Timed, y: Timed): boolean {
  return x.t < y.t || (x.t === y.t && x.seq < y.seq);
}

/**
 * What both simulators share: events wait in a time-ordered queue, and the caller owns time — the
 * live loop runs the queue up to its clock, an offline run goes event by event.
 */
export abstract class QueueDriven<E extends Timed> {
  protected readonly queue = new EventQueue<E>();

  protected abstract run(e: E): void;

  /** Time of the next queued event, Infinity when none. */
  nextTime(): number { return this.queue.peekTime(); }

  /** Runs every queued event due at or before t; returns how many ran. */
  runUntil(t: number, maxEvents = Infinity): number {
    let n = 0;
    while (n < maxEvents && this.queue.peekTime() <= t) {
      this.run(this.queue.pop()!);
      n++;
    }
    return n;
  }

  /** Runs just the next queued event; false when there is none. */
  runNext(): boolean {
    const e = this.queue.pop();
    if (!e) return false;
    this.run(e);
    return true;
  }
}

export interface EngineStats {
  lines: Record<EventKind, number>;
  activities: number;
  accounts: number;
  recRequests: number;
  /** Sessions started from a recommended list (the model's reward). */
  recommendedSessions: number;
  /** Sessions of movies the users found themselves. */
  discoveredSessions: number;
  /** Watch minutes streamed in recommended sessions and in all sessions. */
  recommendedMinutes: number;
  minutes: number;
  ratings: number;
  /** Sessions already in progress when the live loop tuned in (see prefill). */
  prefilled: number;
}

export class Engine extends QueueDriven<QueuedEvent> {
  /** Users 0..registered-1 have accounts; new accounts take the next id. */
  registered: number;
  readonly active = new Set<number>();
  readonly stats: EngineStats = {
    lines: { watch: 0, rate: 0, recommendation: 0, account: 0 },
    activities: 0, accounts: 0, recRequests: 0, recommendedSessions: 0, discoveredSessions: 0,
    recommendedMinutes: 0, minutes: 0, ratings: 0, prefilled: 0,
  };
  private seq = 0;
  readonly behaviour: BehaviourOptions;

  constructor(readonly world: World, private rng: Rng, private hooks: EngineHooks, behaviour: Partial<BehaviourOptions> = {}) {
    super();
    const given = Object.fromEntries(Object.entries(behaviour).filter(([, v]) => v !== undefined));
    this.behaviour = { ...defaultBehaviour, ...given };
    this.registered = Math.max(1, Math.min(world.userCount, Math.floor(world.userCount * this.behaviour.initialUsersFraction)));
    this.initiallyRegistered = this.registered;
  }

  /** Users registered before the run (herdNewUsers leaves them alone). */
  private readonly initiallyRegistered: number;
  /** New users who have had their herded first pick. */
  private readonly herded = new Set<number>();
  /** Amplification: how many times each movie was on a list the platform answered, and when the run began. */
  private readonly shown = new Map<string, number>();
  private firstT: number | null = null;

  /** Amplification: the share of visits that ask and follow the platform's push, 0 → 1 over the ramp. */
  trustAt(t: number): number {
    const ramp = this.behaviour.amplifyRampMs;
    if (ramp === undefined || this.firstT === null) return 0;
    return Math.min(1, Math.max(0, (t - this.firstT) / ramp));
  }

  /** Events waiting in the queue (sessions in progress, ratings and first steps to come). */
  get pending(): number { return this.queue.size; }


  /**
   * Starts an activity at simulated time t: a new user's account creation (and, a little later,
   * their first visit), or a registered user who is not busy asking for recommendations or
   * looking for a movie. False when every user tried was busy.
   */
  beginActivity(t: number): boolean {
    const b = this.behaviour;
    this.firstT ??= t;
    if (this.registered < this.world.userCount && this.rng.chance(b.newAccountFraction)) {
      const user = this.registered++;
      this.active.add(user);
      this.stats.activities++;
      this.stats.accounts++;
      this.emit(user, formatEvent({ kind: 'account', ...fastAt(t), userId: user }), 'account');
      this.push(t + this.rng.int(20_000, 180_000), Ev.Begin, user, -1, 0, 0, false, null);
      return true;
    }
    for (let tries = 0; tries < 8; tries++) {
      const user = chooseUser(this.rng, this.registered);
      if (this.active.has(user)) continue;
      this.active.add(user);
      this.stats.activities++;
      this.visit(user, t);
      return true;
    }
    return false;
  }

  /**
   * The answer to a recommendation request made at `requestT`, seen at `nowT`: writes the request
   * line, then the user picks from the list or looks by themself.
   */
  answer(userId: number, requestT: number, ans: RecAnswer, nowT: number): void {
    const line = formatEvent({
      kind: 'recommendation', ...fastAt(requestT), userId, server: ans.server, status: ans.status,
      movieIds: ans.error === null ? ans.movieIds : [], error: ans.error, latencyMs: ans.latencyMs,
    });
    this.emit(userId, line, 'recommendation');
    const user = this.world.user(userId)!;
    let picked = ans.movieIds.length > 0 ? pickRecommended(this.world, this.rng, user, ans.movieIds) : -1;
    if (this.behaviour.amplifyRampMs !== undefined && ans.movieIds.length > 0) {
      for (const id of ans.movieIds) this.shown.set(id, (this.shown.get(id) ?? 0) + 1);
      if (this.rng.chance(this.trustAt(nowT))) {
        const pushed = pickMostShown(this.world, this.rng, ans.movieIds, this.shown);
        if (pushed >= 0) picked = pushed;
      }
    }
    if (this.behaviour.herdNewUsers && userId >= this.initiallyRegistered && !this.herded.has(userId) && ans.movieIds.length > 0) {
      const first = this.world.movie(ans.movieIds[0]);
      if (first) { picked = first.index; this.herded.add(userId); }
    }
    if (picked >= 0) this.startSession(userId, picked, nowT + this.rng.int(1000, 15_000), true);
    // Nothing appealing: browse for a while, then pick something.
    else this.startSession(userId, discoverMovie(this.world, this.rng, user), nowT + this.rng.int(20_000, 240_000), false);
  }

  /**
   * Tunes in to a platform that has been running: `count` sessions already in progress, each at a
   * random minute of its movie, their next minutes due within the coming simulated minute. So the
   * live loop writes at its full rate from the start instead of ramping up over an hour.
   */
  prefill(t: number, count: number): number {
    this.firstT ??= t;
    let n = 0;
    let busy = 0;
    while (n < count && busy <= count + 100) {
      const user = Math.floor(this.rng.next() * this.registered);
      if (this.active.has(user)) { busy++; continue; }
      const u = this.world.user(user)!;
      const movie = discoverMovie(this.world, this.rng, u);
      const plan = planSession(this.world, this.rng, u, movie);
      // Sessions caught in progress are length-biased (a long one is more likely to be running
      // at any moment); without that the warm start would fade faster than new sessions replace it.
      if (this.rng.next() * 240 >= plan.last - plan.first + 1) continue;
      this.active.add(user);
      this.push(t + this.rng.int(0, MINUTE_MS - 1), Ev.Minute, user, movie, this.rng.int(plan.first, plan.last), plan.last, false, null);
      n++;
    }
    this.stats.prefilled += n;
    return n;
  }

  /**
   * Mean number of lines one activity writes, by simulating the choices of `samples` activities
   * (without writing anything): what the live loop divides its rate by to pace new activities.
   */
  estimateLinesPerActivity(samples = 2000, withRecommendations = true): number {
    const b = this.behaviour;
    let minutes = 0;
    for (let i = 0; i < samples; i++) {
      const user = this.world.user(chooseUser(this.rng, this.registered))!;
      const plan = planSession(this.world, this.rng, user, discoverMovie(this.world, this.rng, user));
      minutes += plan.last - plan.first + 1;
    }
    return minutes / samples + b.rateFraction + b.newAccountFraction + (withRecommendations ? b.recommendFraction : 0);
  }

  /** Queues a callback at simulated time t (the offline generator's recommendation answers). */
  at(t: number, call: () => void): void {
    this.push(t, Ev.Call, -1, -1, 0, 0, false, call);
  }

  private visit(user: number, t: number): void {
    // A herded new user's first visit always asks (and then takes the list's first movie).
    const herd = this.behaviour.herdNewUsers === true && user >= this.initiallyRegistered && !this.herded.has(user);
    // An amplified user who trusts the platform asks for its list (drawn only with the switch on,
    // so runs without it keep their random sequence).
    const trusting = this.behaviour.amplifyRampMs !== undefined && this.rng.chance(this.trustAt(t));
    if (this.hooks.recommend && (herd || trusting || this.rng.chance(this.behaviour.recommendFraction)) && this.hooks.recommend(user, t)) {
      this.stats.recRequests++;
      return;
    }
    this.startSession(user, discoverMovie(this.world, this.rng, this.world.user(user)!), t, false);
  }

  private startSession(user: number, movie: number, t: number, fromRec: boolean): void {
    const plan = planSession(this.world, this.rng, this.world.user(user)!, movie);
    if (fromRec) this.stats.recommendedSessions++;
    else this.stats.discoveredSessions++;
    this.push(t, Ev.Minute, user, movie, plan.first, plan.last, fromRec, null);
  }

  protected run(e: QueuedEvent): void {
    switch (e.type) {
      case Ev.Minute: {
        const movieId = this.world.movies[e.movie].id;
        this.emit(e.user, formatEvent({ kind: 'watch', ...fastAt(e.t), userId: e.user, movieId, minute: e.minute }), 'watch');
        this.stats.minutes++;
        if (e.fromRec) this.stats.recommendedMinutes++;
        if (e.minute < e.last) {
          // The same object goes back in: a session is one allocation, not one per minute.
          e.minute++;
          e.t += MINUTE_MS;
          e.seq = this.seq++;
          this.queue.push(e);
        } else if (this.rng.chance(this.behaviour.rateFraction)) {
          this.push(e.t + 30_000 + Math.round(this.rng.exponential(120_000)), Ev.Rate, e.user, e.movie, 0, 0, false, null);
        } else {
          this.active.delete(e.user);
        }
        return;
      }
      case Ev.Rate: {
        const rating = ratingFor(this.world, this.rng, this.world.user(e.user)!, e.movie);
        this.emit(e.user, formatEvent({ kind: 'rate', ...fastAt(e.t), userId: e.user, movieId: this.world.movies[e.movie].id, rating }), 'rate');
        this.stats.ratings++;
        this.active.delete(e.user);
        return;
      }
      case Ev.Begin:
        this.visit(e.user, e.t);
        return;
      case Ev.Call:
        e.call!();
        return;
    }
  }

  private emit(user: number, line: string, kind: EventKind): void {
    this.stats.lines[kind]++;
    this.hooks.emit(user, line, kind);
  }

  private push(t: number, type: Ev, user: number, movie: number, minute: number, last: number, fromRec: boolean, call: (() => void) | null): void {
    this.queue.push({ t, seq: this.seq++, type, user, movie, minute, last, fromRec, call });
  }
}
