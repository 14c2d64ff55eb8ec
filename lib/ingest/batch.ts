import type { LogEvent } from '../events/types.ts';
import { atIsoOf, parseLine, parseWatchBytes, watchRead } from '../events/parser.ts';

/** One Kafka message as the batch writer needs it: its line, or the line's bytes as Kafka gave them. */
export interface RawMessage {
  offset: number;
  value: string | Buffer | null;
}

export interface WatchAgg {
  userId: number; movieId: string;
  firstMs: number; firstIso: string; lastMs: number; lastIso: string;
  /** Every minute seen, repeats allowed: a push per line is cheaper than a set insert. */
  minutes: number[]; maxMinute: number;
  /** While buildBatch runs: the line firstIso / lastIso is still to be read from (see atIsoOf). */
  firstLine?: Buffer; lastLine?: Buffer;
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
type UserWatches = { userId: number; last: WatchAgg | undefined; byMovie: Map<string, WatchAgg> };
type WatchIndex = Map<number, UserWatches>;

/**
 * Parses and aggregates a batch in offset order; later events win ties for "latest". Kafka's own
 * messages come with their offsets as numbers beside them (no wrapper object per message).
 */
export function buildBatch(messages: readonly RawMessage[]): BatchRows;
export function buildBatch(messages: readonly Pick<RawMessage, 'value'>[], offsets: readonly number[]): BatchRows;
export function buildBatch(messages: readonly Pick<RawMessage, 'value'>[], offsets: readonly number[] = (messages as readonly RawMessage[]).map((m) => m.offset)): BatchRows {
  const rows: BatchRows = {
    watches: [], ratings: new Map(), accounts: new Map(), recommendations: [], deadLetters: [],
    movies: new Set(), users: new Set(), events: 0,
  };
  // Watches by user, then movie: two lookups without building a key string for every line (the
  // lines are nearly all watches, one per minute, so this is ingest's hottest loop).
  const watchIndex: WatchIndex = new Map();
  for (let i = 0; i < messages.length; i++) {
    const value = messages[i].value;
    if (value === null) {
      rows.deadLetters.push({ offset: offsets[i], line: '', reason: 'empty message (null value)' });
      continue;
    }
    // Nearly every line is a watch: read those from the bytes, and decode only the rest.
    if (typeof value !== 'string' && parseWatchBytes(value)) {
      rows.events++;
      addWatchBytes(rows, watchIndex, value);
      continue;
    }
    const line = typeof value === 'string' ? value : value.toString('utf8');
    const parsed = parseLine(line);
    if (!parsed.ok) {
      rows.deadLetters.push({ offset: offsets[i], line: storableLine(line), reason: parsed.reason });
      continue;
    }
    rows.events++;
    addEvent(rows, watchIndex, parsed.event, offsets[i]);
  }
  // A watch row keeps the time text of two lines, so only those two are decoded.
  for (const w of rows.watches) {
    if (w.firstLine !== undefined) { w.firstIso = atIsoOf(w.firstLine); w.firstLine = undefined; }
    if (w.lastLine !== undefined) { w.lastIso = atIsoOf(w.lastLine); w.lastLine = undefined; }
  }
  return rows;
}

/** True when b[start, end) spells s (both ASCII). */
function sameAscii(b: Buffer, start: number, end: number, s: string): boolean {
  if (s.length !== end - start) return false;
  for (let i = start; i < end; i++) if (b[i] !== s.charCodeAt(i - start)) return false;
  return true;
}

/** The watch parseWatchBytes just read; the movie id is decoded only when it is not the user's last one. */
function addWatchBytes(rows: BatchRows, watchIndex: WatchIndex, b: Buffer): void {
  const { movieStart, movieEnd } = watchRead;
  const user = userWatches(rows, watchIndex, watchRead.userId);
  const last = user.last;
  const movieId = last !== undefined && sameAscii(b, movieStart, movieEnd, last.movieId) ? last.movieId : b.toString('latin1', movieStart, movieEnd);
  addWatch(rows, user, movieId, watchRead.atMs, b, watchRead.minute);
}

function userWatches(rows: BatchRows, watchIndex: WatchIndex, userId: number): UserWatches {
  let user = watchIndex.get(userId);
  if (!user) {
    user = { userId, last: undefined, byMovie: new Map() };
    watchIndex.set(userId, user);
    rows.users.add(userId);
  }
  return user;
}

function addEvent(rows: BatchRows, watchIndex: WatchIndex, e: LogEvent, offset: number): void {
  switch (e.kind) {
    case 'watch':
      addWatch(rows, userWatches(rows, watchIndex, e.userId), e.movieId, e.atMs, e.atIso, e.minute);
      return;
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

/** `at` is the line's atIso, or the line itself when its time text is decoded later (see buildBatch). */
function addWatch(rows: BatchRows, user: UserWatches, movieId: string, atMs: number, at: string | Buffer, minute: number): void {
  const atIso = typeof at === 'string' ? at : '';
  const atLine = typeof at === 'string' ? undefined : at;
  // A user's watch lines come a minute at a time, mostly of the movie of their last line: a
  // string comparison then spares hashing the fresh movie id string for the map.
  const last = user.last;
  const w = last !== undefined && last.movieId === movieId ? last : user.byMovie.get(movieId);
  if (!w) {
    rows.movies.add(movieId);
    const agg: WatchAgg = {
      userId: user.userId, movieId, firstMs: atMs, firstIso: atIso, lastMs: atMs, lastIso: atIso, minutes: [minute], maxMinute: minute,
      firstLine: atLine, lastLine: atLine,
    };
    user.byMovie.set(movieId, agg);
    user.last = agg;
    rows.watches.push(agg);
  } else {
    user.last = w;
    if (atMs < w.firstMs) { w.firstMs = atMs; w.firstIso = atIso; w.firstLine = atLine; }
    if (atMs >= w.lastMs) { w.lastMs = atMs; w.lastIso = atIso; w.lastLine = atLine; }
    w.minutes.push(minute);
    if (minute > w.maxMinute) w.maxMinute = minute;
  }
}

const HEX_CODES = Buffer.from('0123456789abcdef', 'latin1');

/**
 * The minutes seen as Postgres varbit text in hex ('x', then one digit per four minutes): bit i
 * set when minute i was seen, padded with zeros to whole digits (marquee_bit_or pads the shorter
 * side anyway, and max_minute keeps the last minute). A watch row's bitmap spelled in '0' and '1'
 * was a sixth of a batch's SQL text, one character per minute of the movie.
 */
export function minuteBits(minutes: readonly number[], maxMinute: number): string {
  // The digits' values are set in place, then spelled: one buffer per row.
  const text = Buffer.alloc((maxMinute >> 2) + 2);
  for (const m of minutes) text[1 + (m >> 2)] |= 8 >> (m & 3);
  for (let i = 1; i < text.length; i++) text[i] = HEX_CODES[text[i]];
  text[0] = 120; // x
  return text.toString('latin1');
}
