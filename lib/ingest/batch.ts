import type { LogEvent } from '../events/types.ts';
import { parseLine } from '../events/parser.ts';

/** One Kafka message as the batch writer needs it. */
export interface RawMessage {
  offset: number;
  value: string | null;
}

export interface WatchAgg {
  userId: number; movieId: string;
  firstMs: number; firstIso: string; lastMs: number; lastIso: string;
  /** Every minute seen, repeats allowed: a push per line is cheaper than a set insert. */
  minutes: number[]; maxMinute: number;
}
export interface RatingAgg { userId: number; movieId: string; rating: number; atMs: number; atIso: string }
export interface AccountAgg { userId: number; atMs: number; atIso: string }
export interface RecommendationRow { offset: number; atIso: string; userId: number; server: string; status: number; movieIds: string[]; error: string | null; latencyMs: number }
export interface DeadLetter { offset: number; line: string; reason: string }

/** What one Kafka batch turns into: rows aggregated per key, ready for one upsert per table. */
export interface BatchRows {
  watches: WatchAgg[];
  ratings: Map<string, RatingAgg>;
  accounts: Map<number, AccountAgg>;
  recommendations: RecommendationRow[];
  deadLetters: DeadLetter[];
  movies: Set<string>;
  users: Set<number>;
  events: number;
}

/** Keeps very long garbage from bloating the dead-letter table while still showing what came in. */
const MAX_DEAD_LINE = 8192;

/** Postgres text cannot hold NUL, so it is shown as \u0000; very long garbage is cut. */
function storableLine(line: string): string {
  const cut = line.length > MAX_DEAD_LINE ? line.slice(0, MAX_DEAD_LINE) : line;
  return cut.includes('\u0000') ? cut.split('\u0000').join('\\u0000') : cut;
}

/** Per user: the watch row of their last watch line, and all their watch rows by movie. */
type WatchIndex = Map<number, { last: WatchAgg | undefined; byMovie: Map<string, WatchAgg> }>;

/** Parses and aggregates a batch in offset order; later events win ties for "latest". */
export function buildBatch(messages: RawMessage[]): BatchRows {
  const rows: BatchRows = {
    watches: [], ratings: new Map(), accounts: new Map(), recommendations: [], deadLetters: [],
    movies: new Set(), users: new Set(), events: 0,
  };
  // Watches by user, then movie: two lookups without building a key string for every line (the
  // lines are nearly all watches, one per minute, so this is ingest's hottest loop).
  const watchIndex: WatchIndex = new Map();
  for (const m of messages) {
    if (m.value === null) {
      rows.deadLetters.push({ offset: m.offset, line: '', reason: 'empty message (null value)' });
      continue;
    }
    const parsed = parseLine(m.value);
    if (!parsed.ok) {
      rows.deadLetters.push({ offset: m.offset, line: storableLine(m.value), reason: parsed.reason });
      continue;
    }
    rows.events++;
    addEvent(rows, watchIndex, parsed.event, m.offset);
  }
  return rows;
}

function addEvent(rows: BatchRows, watchIndex: WatchIndex, e: LogEvent, offset: number): void {
  switch (e.kind) {
    case 'watch': {
      let user = watchIndex.get(e.userId);
      if (!user) {
        user = { last: undefined, byMovie: new Map() };
        watchIndex.set(e.userId, user);
        rows.users.add(e.userId);
      }
      // A user's watch lines come a minute at a time, mostly of the movie of their last line: a
      // string comparison then spares hashing the fresh movie id string for the map.
      const last = user.last;
      const w = last !== undefined && last.movieId === e.movieId ? last : user.byMovie.get(e.movieId);
      if (!w) {
        rows.movies.add(e.movieId);
        const agg: WatchAgg = { userId: e.userId, movieId: e.movieId, firstMs: e.atMs, firstIso: e.atIso, lastMs: e.atMs, lastIso: e.atIso, minutes: [e.minute], maxMinute: e.minute };
        user.byMovie.set(e.movieId, agg);
        user.last = agg;
        rows.watches.push(agg);
      } else {
        user.last = w;
        if (e.atMs < w.firstMs) { w.firstMs = e.atMs; w.firstIso = e.atIso; }
        if (e.atMs >= w.lastMs) { w.lastMs = e.atMs; w.lastIso = e.atIso; }
        w.minutes.push(e.minute);
        if (e.minute > w.maxMinute) w.maxMinute = e.minute;
      }
      return;
    }
    case 'rate': {
      rows.users.add(e.userId);
      rows.movies.add(e.movieId);
      const key = `${e.userId}\t${e.movieId}`;
      const r = rows.ratings.get(key);
      if (!r || e.atMs >= r.atMs) rows.ratings.set(key, { userId: e.userId, movieId: e.movieId, rating: e.rating, atMs: e.atMs, atIso: e.atIso });
      break;
    }
    case 'account': {
      rows.users.add(e.userId);
      const a = rows.accounts.get(e.userId);
      if (!a || e.atMs < a.atMs) rows.accounts.set(e.userId, { userId: e.userId, atMs: e.atMs, atIso: e.atIso });
      break;
    }
    case 'recommendation':
      rows.users.add(e.userId);
      for (const id of e.movieIds) rows.movies.add(id);
      rows.recommendations.push({ offset, atIso: e.atIso, userId: e.userId, server: e.server, status: e.status, movieIds: e.movieIds, error: e.error, latencyMs: e.latencyMs });
      break;
  }
}

/** The minutes seen as a bit string, bit i set when minute i was seen (Postgres varbit text form). */
export function minuteBits(minutes: readonly number[], maxMinute: number): string {
  const bits = new Uint8Array(maxMinute + 1).fill(48);
  for (const m of minutes) bits[m] = 49;
  return Buffer.from(bits).toString('latin1');
}
