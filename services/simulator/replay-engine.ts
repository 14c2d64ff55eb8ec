/**
 * The replay world's users in action: each user comes back at the real time of their next rating
 * (mapped onto log time by the ReplayClock), asks for recommendations, and then either starts a
 * recommended movie, if they really rated it within the attribution window after the request, or
 * goes on with their real next movie. This is the replay method of unbiased offline evaluation (Li
 * et al., 2011) made to run live: a recommendation only changes what a user does when the data
 * says the user would have taken it, so what a model earns is real behaviour, not a simulated
 * taste. A movie taken early is not watched again at its real time.
 *
 * Every rating becomes one activity: `minutes` watch lines and the rating line with the real
 * rating. A user asks for recommendations when they come back to the platform: at an activity
 * whose real time is at least `visitGapMs` after their previous rating (the first of a visit;
 * MovieLens users rate dozens of movies in one sitting, and one request per sitting is what a
 * person opening the site does). A user does one thing at a time, so a
 * burst of ratings (MovieLens users rate dozens in minutes) comes out one after the other: a
 * user's lines are in time order and may trail the data set's clock a little during a burst.
 * The engine owns no clock: the live loop runs it up to the wall clock, a test jumps from event
 * to event.
 */
import { formatEvent } from '../../lib/events/format.ts';
import type { Rng } from '../../lib/random.ts';
import { QueueDriven, fastAt, type EngineHooks, type EngineStats, type RecAnswer } from './engine.ts';
import type { ReplayClock, ReplayRating, ReplayWorld } from './replay-world.ts';

export interface ReplayOptions {
  /** Attribution window in data-set time: a recommended movie is taken if rated within it after the request. */
  windowMs: number;
  /** Watch minutes written per rating (as `import movielens --minutes`), default 1. */
  minutes?: number;
  /** Data-set time away after which a user's next activity is a new visit, which asks for recommendations (default 1 h; 0: every activity asks). */
  visitGapMs?: number;
  /** Share of visits that start with a recommendation request (default 1: every one). */
  recommendFraction?: number;
}

export const DEFAULT_VISIT_GAP_MS = 3_600_000;

/** Whether the rating at `i` of a user's time-ordered ratings starts a visit (the first, or after a gap). */
export function startsVisit(ratings: readonly { atMs: number }[], i: number, gapMs = DEFAULT_VISIT_GAP_MS): boolean {
  return i === 0 || ratings[i].atMs - ratings[i - 1].atMs >= gapMs;
}

/**
 * What a user does after an answer: the position in `upcoming` (their ratings not yet replayed,
 * time order) of the best-ranked recommended movie they rated at or before `requestAt + windowMs`,
 * or, when the list holds none, 0: their real next movie.
 */
export function replayChoice(upcoming: readonly ReplayRating[], ids: readonly string[], requestAt: number, windowMs: number): { index: number; fromRecommendation: boolean } {
  const within = new Map<string, number>();
  for (let i = 0; i < upcoming.length && upcoming[i].atMs <= requestAt + windowMs; i++) within.set(upcoming[i].movie, i);
  for (const id of ids) {
    const i = within.get(id);
    if (i !== undefined) return { index: i, fromRecommendation: true };
  }
  return { index: 0, fromRecommendation: false };
}

const enum Ev { Visit, Minute, Rate }

interface ReplayEvent { t: number; seq: number; type: Ev; user: number; entry: number; minute: number; fromRec: boolean }

interface UserState {
  ratings: readonly ReplayRating[];
  /** Which ratings have been replayed (or belong to the past). */
  done: Uint8Array;
  /** First rating not yet done. */
  head: number;
  hasAccount: boolean;
  /** The head at which this user last asked (after taking a recommended movie the head stays; one request per visit). */
  askedAt: number;
}

export class ReplayEngine extends QueueDriven<ReplayEvent> {
  readonly stats: EngineStats = {
    lines: { watch: 0, rate: 0, recommendation: 0, account: 0 },
    activities: 0, accounts: 0, recRequests: 0, recommendedSessions: 0, discoveredSessions: 0,
    recommendedMinutes: 0, minutes: 0, ratings: 0, prefilled: 0,
  };
  /** Users with an activity in progress. */
  readonly active = new Set<number>();
  /** Users with ratings still to replay. */
  remainingUsers = 0;
  private readonly users = new Map<number, UserState>();
  private seq = 0;
  private readonly minutes: number;
  private readonly sessionMs: number;
  /** Log ms between two lines of one session: a data-set minute, at least 1 ms. */
  readonly stepMs: number;
  private readonly recommendFraction: number;
  private readonly visitGapMs: number;

  constructor(readonly world: ReplayWorld, readonly clock: ReplayClock, private rng: Rng, private hooks: EngineHooks, readonly opts: ReplayOptions) {
    super();
    this.minutes = opts.minutes ?? 1;
    if (!Number.isInteger(this.minutes) || this.minutes < 1 || this.minutes > 600) throw new Error(`minutes must be an integer from 1 to 600, got ${this.minutes}`);
    if (!(opts.windowMs >= 0)) throw new Error(`the replay window must be ≥ 0 ms, got ${opts.windowMs}`);
    this.recommendFraction = opts.recommendFraction ?? 1;
    this.visitGapMs = opts.visitGapMs ?? DEFAULT_VISIT_GAP_MS;
    if (!(this.visitGapMs >= 0)) throw new Error(`visitGapMs must be ≥ 0, got ${this.visitGapMs}`);
    if (!(this.recommendFraction >= 0 && this.recommendFraction <= 1)) throw new Error(`recommendFraction must be within 0..1, got ${this.recommendFraction}`);
    this.sessionMs = this.minutes * 60_000;
    this.stepMs = Math.max(1, Math.round(60_000 / clock.speed));
    for (const [user, ratings] of world.ratingsByUser) {
      const done = new Uint8Array(ratings.length);
      let head = 0;
      // Ratings before the replay start are the past (replayPastLines writes them).
      while (head < ratings.length && ratings[head].atMs < clock.dataStart) done[head++] = 1;
      this.users.set(user, { ratings, done, head, hasAccount: head > 0, askedAt: -1 });
      if (head < ratings.length) {
        this.remainingUsers++;
        this.push(clock.toLog(ratings[head].atMs - this.sessionMs), Ev.Visit, user, head, 0, false);
      }
    }
  }

  /** True when every rating has been replayed. */
  get finished(): boolean { return this.remainingUsers === 0 && this.queue.size === 0; }


  /**
   * The answer to the request `userId` made at log time `requestT`, seen at `nowT`: writes the
   * request line, then the user takes a recommended movie they really rated within the window
   * after the request, or their real next movie.
   */
  answer(userId: number, requestT: number, ans: RecAnswer, nowT: number): void {
    this.emit(userId, formatEvent({
      kind: 'recommendation', ...fastAt(requestT), userId, server: ans.server, status: ans.status,
      movieIds: ans.error === null ? ans.movieIds : [], error: ans.error, latencyMs: ans.latencyMs,
    }), 'recommendation');
    const u = this.users.get(userId)!;
    const upcoming: ReplayRating[] = [];
    const entries: number[] = [];
    const requestAt = u.ratings[u.head].atMs - this.sessionMs;
    for (let i = u.head; i < u.ratings.length && u.ratings[i].atMs <= requestAt + this.opts.windowMs; i++) {
      if (u.done[i]) continue;
      upcoming.push(u.ratings[i]);
      entries.push(i);
    }
    const choice = ans.movieIds.length > 0 ? replayChoice(upcoming, ans.movieIds, requestAt, this.opts.windowMs) : { index: 0, fromRecommendation: false };
    this.startSession(userId, entries[choice.index] ?? u.head, Math.max(nowT, requestT) + this.stepMs, choice.fromRecommendation);
  }

  protected run(e: ReplayEvent): void {
    switch (e.type) {
      case Ev.Visit: {
        const u = this.users.get(e.user)!;
        this.active.add(e.user);
        this.stats.activities++;
        if (!u.hasAccount) {
          u.hasAccount = true;
          this.stats.accounts++;
          this.emit(e.user, formatEvent({ kind: 'account', ...fastAt(e.t), userId: e.user }), 'account');
        }
        const visit = startsVisit(u.ratings, u.head, this.visitGapMs) && u.askedAt !== u.head;
        u.askedAt = u.head;
        if (visit && this.hooks.recommend && this.rng.chance(this.recommendFraction) && this.hooks.recommend(e.user, e.t)) {
          this.stats.recRequests++;
          return;
        }
        this.startSession(e.user, u.head, e.t, false);
        return;
      }
      case Ev.Minute: {
        const movie = this.users.get(e.user)!.ratings[e.entry].movie;
        this.emit(e.user, formatEvent({ kind: 'watch', ...fastAt(e.t), userId: e.user, movieId: movie, minute: e.minute }), 'watch');
        this.stats.minutes++;
        if (e.fromRec) this.stats.recommendedMinutes++;
        if (e.minute + 1 < this.minutes) this.push(e.t + this.stepMs, Ev.Minute, e.user, e.entry, e.minute + 1, e.fromRec);
        else this.push(e.t + this.stepMs, Ev.Rate, e.user, e.entry, 0, e.fromRec);
        return;
      }
      case Ev.Rate: {
        const u = this.users.get(e.user)!;
        const r = u.ratings[e.entry];
        this.emit(e.user, formatEvent({ kind: 'rate', ...fastAt(e.t), userId: e.user, movieId: r.movie, rating: r.rating }), 'rate');
        this.stats.ratings++;
        this.active.delete(e.user);
        while (u.head < u.ratings.length && u.done[u.head]) u.head++;
        if (u.head >= u.ratings.length) {
          this.remainingUsers--;
          return;
        }
        // Back at the real time of the next rating's session, or right away when trailing behind it.
        this.push(Math.max(this.clock.toLog(u.ratings[u.head].atMs - this.sessionMs), e.t + this.stepMs), Ev.Visit, e.user, u.head, 0, false);
        return;
      }
    }
  }

  private startSession(user: number, entry: number, t: number, fromRec: boolean): void {
    this.users.get(user)!.done[entry] = 1;
    if (fromRec) this.stats.recommendedSessions++;
    else this.stats.discoveredSessions++;
    this.push(t, Ev.Minute, user, entry, 0, fromRec);
  }

  private emit(user: number, line: string, kind: keyof EngineStats['lines']): void {
    this.stats.lines[kind]++;
    this.hooks.emit(user, line, kind);
  }

  private push(t: number, type: Ev, user: number, entry: number, minute: number, fromRec: boolean): void {
    this.queue.push({ t, seq: this.seq++, type, user, entry, minute, fromRec });
  }
}
