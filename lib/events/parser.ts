/**
 * One raw Kafka line → a typed event or a rejection reason. Never throws.
 *
 * Grammar (ARCHITECTURE.md, "Kafka lines"):
 *   <time>,<user>,GET /data/m/<movie>/<minute>.mpg
 *   <time>,<user>,GET /rate/<movie>=<rating>
 *   <time>,<user>,recommendation request <server>, status <code>, result: <ids|error>, <n> ms
 *   <time>,<user>,GET /create_account
 *
 * Written as a single left-to-right scan with indexOf/charCodeAt and no regular expressions,
 * because ingest runs it on every message (target: 50k+ msg/s end to end on 2 cores).
 *
 * Rules beyond the contract, decided here:
 * - The whole line is trimmed (String#trim: spaces, tabs, \r\n, BOM); fields are not.
 * - `<time>`: `YYYY-MM-DDTHH:MM:SS` + optional `.` and 1-9 digits, no zone, read as UTC; year
 *   0001-9999, real calendar dates only (Feb 30 and Feb 29 of non-leap years are rejected), no
 *   leap second (Postgres would roll it over into the next minute silently).
 * - `<user>`: decimal digits (leading zeros allowed), ≤ 2^31-1 so it fits a Postgres int.
 * - `<movie>`: see slug.ts for the charset. `<minute>`: digits, ≤ MAX_MINUTE. `<rating>`: 1-5.
 * - Recommendation: `<server>` is printable ASCII without spaces or commas; `<code>` is 1-3
 *   digits; ids are split on `,` with any spaces around them; `<n>` is integer milliseconds.
 *   Status 0 → the result is error text (may hold commas and colons; the latency is found from
 *   the end of the line). Status 2xx → the result must be valid ids. Other statuses → ids when
 *   every item is a valid id, else the text is kept as `error` (an HTTP error body, say).
 * - The 4-field GET forms must not contain another comma ("wrong number of fields").
 */
import { isValidSlugBytes, isValidSlugRange } from './slug.ts';
import {
  MAX_INT4,
  MAX_LINE_LENGTH,
  MAX_MINUTE,
  MAX_SERVER_LENGTH,
  type LogEvent,
  type ParseResult,
  type RateEvent,
} from './types.ts';

const C_0 = 48;
const C_9 = 57;
const C_COMMA = 44;
const C_SPACE = 32;
const C_MINUS = 45;

const WATCH_PREFIX = 'GET /data/m/';
const RATE_PREFIX = 'GET /rate/';
const ACCOUNT_REQUEST = 'GET /create_account';
const REC_PREFIX = 'recommendation request ';
const STATUS_PREFIX = ', status ';
const RESULT_PREFIX = ', result:';

const DAYS_IN_MONTH = [0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function fail(reason: string): ParseResult {
  return { ok: false, reason };
}

function ok(event: LogEvent): ParseResult {
  return { ok: true, event };
}

/** Digit value at i, or -1. */
function digitAt(s: string, i: number): number {
  const c = s.charCodeAt(i);
  return c >= C_0 && c <= C_9 ? c - C_0 : -1;
}

/**
 * Non-negative decimal integer in s[start, end), all digits, at least one; -1 if not, and a value
 * above `max` comes back as max + 1 (so callers tell "bad" from "out of range" without overflow).
 */
function readUint(s: string, start: number, end: number, max: number): number {
  if (end <= start) return -1;
  let v = 0;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c < C_0 || c > C_9) return -1;
    if (v <= max) v = v * 10 + (c - C_0);
  }
  return v > max ? max + 1 : v;
}

/** Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
function daysFromCivil(y: number, m: number, d: number): number {
  y -= m <= 2 ? 1 : 0;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (m > 2 ? m - 3 : m + 9) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

// The timestamp reader hands its two results back through these rather than an object per line.
let tsMs = 0;
let tsIso = '';

/** Reads the timestamp in s[0, end); returns a reject reason or null (then tsMs/tsIso are set). */
function readTimestamp(s: string, end: number): string | null {
  if (end < 19) return 'bad timestamp';
  if (
    s.charCodeAt(4) !== C_MINUS || s.charCodeAt(7) !== C_MINUS || s.charCodeAt(10) !== 84 /* T */ ||
    s.charCodeAt(13) !== 58 || s.charCodeAt(16) !== 58 /* : */
  ) return 'bad timestamp';
  const y0 = digitAt(s, 0), y1 = digitAt(s, 1), y2 = digitAt(s, 2), y3 = digitAt(s, 3);
  const mo0 = digitAt(s, 5), mo1 = digitAt(s, 6), d0 = digitAt(s, 8), d1 = digitAt(s, 9);
  const h0 = digitAt(s, 11), h1 = digitAt(s, 12), mi0 = digitAt(s, 14), mi1 = digitAt(s, 15);
  const s0 = digitAt(s, 17), s1 = digitAt(s, 18);
  if ((y0 | y1 | y2 | y3 | mo0 | mo1 | d0 | d1 | h0 | h1 | mi0 | mi1 | s0 | s1) < 0) return 'bad timestamp';

  let millis = 0;
  if (end > 19) {
    const digits = end - 20;
    if (s.charCodeAt(19) !== 46 /* . */ || digits < 1 || digits > 9) return 'bad timestamp';
    for (let i = 20; i < end; i++) {
      const dv = digitAt(s, i);
      if (dv < 0) return 'bad timestamp';
      if (i < 23) millis = millis * 10 + dv;
    }
    if (digits < 3) millis *= digits === 1 ? 100 : 10;
  }

  const ms = civilMs(y0 * 1000 + y1 * 100 + y2 * 10 + y3, mo0 * 10 + mo1, d0 * 10 + d1, h0 * 10 + h1, mi0 * 10 + mi1, s0 * 10 + s1, millis);
  if (ms === null) return 'timestamp out of range';
  tsMs = ms;
  // Postgres keeps microseconds: cut (never round) digits 7-9 off.
  tsIso = s.slice(0, isoEnd(end)) + 'Z';
  return null;
}

/** Where a timestamp of `end` characters is cut for Postgres (microseconds, see tsIso). */
export function isoEnd(end: number): number {
  return end > 26 ? 26 : end;
}

/** Epoch milliseconds of a calendar time, or null when there is no such time (Feb 30, hour 24). */
function civilMs(year: number, month: number, day: number, hour: number, minute: number, second: number, millis: number): number | null {
  if (year < 1 || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return null;
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  if (day > (month === 2 && leap ? 29 : DAYS_IN_MONTH[month])) return null;
  return daysFromCivil(year, month, day) * 86_400_000 + hour * 3_600_000 + minute * 60_000 + second * 1000 + millis;
}

/** Digit value of byte i, or -1. */
function byteDigit(b: Uint8Array, i: number): number {
  const c = b[i];
  return c >= C_0 && c <= C_9 ? c - C_0 : -1;
}

/** readTimestamp over bytes: true when b[0, end) is a timestamp parseLine accepts (then tsMs is set; tsIso is not). */
function readTimestampBytes(b: Uint8Array, end: number): boolean {
  if (end < 19 || b[4] !== C_MINUS || b[7] !== C_MINUS || b[10] !== 84 || b[13] !== 58 || b[16] !== 58) return false;
  const y0 = byteDigit(b, 0), y1 = byteDigit(b, 1), y2 = byteDigit(b, 2), y3 = byteDigit(b, 3), mo0 = byteDigit(b, 5), mo1 = byteDigit(b, 6), d0 = byteDigit(b, 8), d1 = byteDigit(b, 9);
  const h0 = byteDigit(b, 11), h1 = byteDigit(b, 12), mi0 = byteDigit(b, 14), mi1 = byteDigit(b, 15), s0 = byteDigit(b, 17), s1 = byteDigit(b, 18);
  if ((y0 | y1 | y2 | y3 | mo0 | mo1 | d0 | d1 | h0 | h1 | mi0 | mi1 | s0 | s1) < 0) return false;
  let millis = 0;
  if (end > 19) {
    const digits = end - 20;
    if (b[19] !== 46 || digits < 1 || digits > 9) return false;
    for (let i = 20; i < end; i++) {
      const dv = byteDigit(b, i);
      if (dv < 0) return false;
      if (i < 23) millis = millis * 10 + dv;
    }
    if (digits < 3) millis *= digits === 1 ? 100 : 10;
  }
  const ms = civilMs(y0 * 1000 + y1 * 100 + y2 * 10 + y3, mo0 * 10 + mo1, d0 * 10 + d1, h0 * 10 + h1, mi0 * 10 + mi1, s0 * 10 + s1, millis);
  if (ms === null) return false;
  tsMs = ms;
  return true;
}

export function parseLine(raw: string): ParseResult {
  try {
    return parseTrimmed(typeof raw === 'string' ? raw.trim() : raw);
  } catch (err) {
    // Unreachable by design (the fuzz test holds it to that); the guard keeps the never-throws promise.
    return fail(`internal parser error: ${err instanceof Error ? err.message : String(err)}`.slice(0, 200));
  }
}

/**
 * What parseWatchBytes read from the last line it accepted; the next call overwrites it. The
 * timestamp's text is not decoded: `atIsoOf(line)` gives it, for the few lines whose time is kept.
 */
export const watchRead = { atMs: 0, userId: 0, minute: 0, movieStart: 0, movieEnd: 0 };

const WATCH_PREFIX_CODES = [...WATCH_PREFIX].map((c) => c.charCodeAt(0));
const C_SLASH = 47;

/** readUint over bytes. */
function readUintBytes(b: Uint8Array, start: number, end: number, max: number): number {
  if (end <= start) return -1;
  let v = 0;
  for (let i = start; i < end; i++) {
    const c = b[i];
    if (c < C_0 || c > C_9) return -1;
    if (v <= max) v = v * 10 + (c - C_0);
  }
  return v > max ? max + 1 : v;
}

/**
 * The ingest's fast path for its commonest line, read from the message's bytes in plain loops (a
 * Buffer method per line costs more than the parse): no string for the line, no result or event
 * object. True when `b` is a watch line in canonical form (every byte ASCII, nothing to trim) that
 * parseLine accepts, with its fields in `watchRead`; false for any other line, which the caller
 * hands to parseLine (so false never means "invalid", and the reasons stay parseLine's). Every
 * byte of an accepted line is checked against the grammar, which makes it ASCII, so its UTF-8
 * decoding is the same text; the fuzz test holds the two paths to the same answers.
 */
export function parseWatchBytes(b: Uint8Array): boolean {
  const len = b.length;
  if (len > MAX_LINE_LENGTH || b[len - 1] !== 103 /* g */) return false;
  // No comma sits in the first 19 bytes of a line readTimestampBytes accepts.
  let c1 = 19;
  while (c1 < len && c1 < 30 && b[c1] !== C_COMMA) c1++;
  if (b[c1] !== C_COMMA || !readTimestampBytes(b, c1)) return false;
  let c2 = c1 + 1;
  while (c2 < len && b[c2] !== C_COMMA) c2++;
  if (c2 >= len) return false;
  const userId = readUintBytes(b, c1 + 1, c2, MAX_INT4);
  if (userId < 0 || userId > MAX_INT4) return false;
  const p = c2 + 1 + WATCH_PREFIX_CODES.length;
  if (p > len) return false;
  for (let i = 0; i < WATCH_PREFIX_CODES.length; i++) if (b[c2 + 1 + i] !== WATCH_PREFIX_CODES[i]) return false;
  let slash = p;
  while (slash < len && b[slash] !== C_SLASH) slash++;
  if (slash >= len || !isValidSlugBytes(b, p, slash)) return false;
  // ".mpg", and at least one minute digit before it.
  if (len - 4 < slash + 2 || b[len - 4] !== 46 || b[len - 3] !== 109 || b[len - 2] !== 112) return false;
  const minute = readUintBytes(b, slash + 1, len - 4, MAX_MINUTE);
  if (minute < 0 || minute > MAX_MINUTE) return false;
  watchRead.atMs = tsMs;
  watchRead.userId = userId;
  watchRead.minute = minute;
  watchRead.movieStart = p;
  watchRead.movieEnd = slash;
  return true;
}

/** The atIso of a line parseWatchBytes accepted: its timestamp's text, as parseLine gives it. */
export function atIsoOf(line: Buffer): string {
  let c1 = 19;
  while (c1 < line.length && line[c1] !== C_COMMA) c1++;
  return line.toString('latin1', 0, isoEnd(c1)) + 'Z';
}

function parseTrimmed(s: string): ParseResult {
  if (typeof s !== 'string') return fail('not a string');
  const len = s.length;
  if (len === 0) return fail('empty line');
  if (len > MAX_LINE_LENGTH) return fail(`line too long (${len} > ${MAX_LINE_LENGTH})`);

  const c1 = s.indexOf(',');
  if (c1 < 0) return fail('wrong number of fields');
  const c2 = s.indexOf(',', c1 + 1);
  if (c2 < 0) return fail('wrong number of fields');

  const tsReason = readTimestamp(s, c1);
  if (tsReason !== null) return fail(tsReason);
  const atMs = tsMs;
  const atIso = tsIso;

  if (c2 === c1 + 1) return fail('missing user id');
  const userId = readUint(s, c1 + 1, c2, MAX_INT4);
  if (userId < 0) {
    if (s.charCodeAt(c1 + 1) === C_MINUS && readUint(s, c1 + 2, c2, MAX_INT4) >= 0) return fail('negative user id');
    return fail('bad user id');
  }
  if (userId > MAX_INT4) return fail('user id out of range');

  const r = c2 + 1;
  if (s.startsWith('GET /', r)) {
    if (s.indexOf(',', r) >= 0) return fail('wrong number of fields');

    if (s.startsWith(WATCH_PREFIX, r)) {
      const p = r + WATCH_PREFIX.length;
      const slash = s.indexOf('/', p);
      if (slash < 0) return fail('bad watch request');
      if (!isValidSlugRange(s, p, slash)) return fail('bad movie id');
      if (!s.endsWith('.mpg') || len - 4 < slash + 1) return fail('bad watch request');
      const minute = readUint(s, slash + 1, len - 4, MAX_MINUTE);
      if (minute < 0) return fail('bad minute');
      if (minute > MAX_MINUTE) return fail('minute out of range');
      return ok({ kind: 'watch', atIso, atMs, userId, movieId: s.slice(p, slash), minute });
    }

    if (s.startsWith(RATE_PREFIX, r)) {
      const p = r + RATE_PREFIX.length;
      const eq = s.indexOf('=', p);
      if (eq < 0) return fail('bad rate request');
      if (!isValidSlugRange(s, p, eq)) return fail('bad movie id');
      const rating = readUint(s, eq + 1, len, 9);
      if (rating < 0) {
        if (s.charCodeAt(eq + 1) === C_MINUS && readUint(s, eq + 2, len, 9) >= 0) return fail('rating out of range 1-5');
        return fail('bad rating');
      }
      if (rating < 1 || rating > 5) return fail('rating out of range 1-5');
      return ok({ kind: 'rate', atIso, atMs, userId, movieId: s.slice(p, eq), rating: rating as RateEvent['rating'] });
    }

    if (len === r + ACCOUNT_REQUEST.length && s.startsWith(ACCOUNT_REQUEST, r)) {
      return ok({ kind: 'account', atIso, atMs, userId });
    }
    return fail('unknown request');
  }

  if (s.startsWith(REC_PREFIX, r)) return parseRecommendation(s, r + REC_PREFIX.length, atIso, atMs, userId);
  return fail('unknown request');
}

function parseRecommendation(s: string, p: number, atIso: string, atMs: number, userId: number): ParseResult {
  const len = s.length;
  const comma = s.indexOf(',', p);
  if (comma < 0) return fail('bad recommendation request');
  if (comma === p || comma - p > MAX_SERVER_LENGTH) return fail('bad server');
  for (let i = p; i < comma; i++) {
    const c = s.charCodeAt(i);
    if (c <= C_SPACE || c > 126) return fail('bad server');
  }
  if (!s.startsWith(STATUS_PREFIX, comma)) return fail('bad recommendation request');

  const statusStart = comma + STATUS_PREFIX.length;
  let statusEnd = statusStart;
  while (statusEnd < len && digitAt(s, statusEnd) >= 0) statusEnd++;
  if (statusEnd === statusStart || statusEnd - statusStart > 3) return fail('bad status');
  if (!s.startsWith(RESULT_PREFIX, statusEnd)) {
    return fail(s.charCodeAt(statusEnd) === C_COMMA ? 'bad recommendation request' : 'bad status');
  }
  const status = readUint(s, statusStart, statusEnd, 999);
  const resultStart = statusEnd + RESULT_PREFIX.length;

  // The latency is the last thing on the line: "..., <n> ms". Scan backwards so that error text
  // before it may hold anything, commas and colons included.
  if (len - resultStart < 2 || !s.endsWith('ms')) return fail('missing latency');
  let j = len - 3;
  while (j >= resultStart && s.charCodeAt(j) === C_SPACE) j--;
  const latEnd = j + 1;
  while (j >= resultStart && digitAt(s, j) >= 0) j--;
  const latStart = j + 1;
  if (latStart === latEnd) return fail('bad latency');
  while (j >= resultStart && s.charCodeAt(j) === C_SPACE) j--;
  let resultEnd: number;
  if (j < resultStart) resultEnd = resultStart; // "result: 12 ms": nothing was answered
  else if (s.charCodeAt(j) === C_COMMA) resultEnd = j;
  else return fail('bad latency');
  const latencyMs = readUint(s, latStart, latEnd, MAX_INT4);
  if (latencyMs > MAX_INT4) return fail('latency out of range');

  let a = resultStart;
  let b = resultEnd;
  while (a < b && s.charCodeAt(a) === C_SPACE) a++;
  while (b > a && s.charCodeAt(b - 1) === C_SPACE) b--;

  if (status !== 0) {
    const movieIds = readIds(s, a, b);
    if (movieIds !== null) {
      return ok({ kind: 'recommendation', atIso, atMs, userId, server: s.slice(p, comma), status, movieIds, error: null, latencyMs });
    }
    if (status >= 200 && status < 300) return fail('bad movie id in result');
  }
  const error = s.slice(a, b);
  // Postgres text cannot hold NUL; everything else in the error text is kept as is.
  if (error.indexOf('\u0000') >= 0) return fail('NUL character in error text');
  return ok({ kind: 'recommendation', atIso, atMs, userId, server: s.slice(p, comma), status, movieIds: [], error, latencyMs });
}

/** Ids in s[a, b) separated by ',' with optional spaces around; null if any item is not a valid id. */
function readIds(s: string, a: number, b: number): string[] | null {
  const ids: string[] = [];
  if (a === b) return ids;
  let start = a;
  for (;;) {
    let end = s.indexOf(',', start);
    if (end < 0 || end > b) end = b;
    let x = start;
    let y = end;
    while (x < y && s.charCodeAt(x) === C_SPACE) x++;
    while (y > x && s.charCodeAt(y - 1) === C_SPACE) y--;
    if (!isValidSlugRange(s, x, y)) return null;
    ids.push(s.slice(x, y));
    if (end === b) return ids;
    start = end + 1;
  }
}
