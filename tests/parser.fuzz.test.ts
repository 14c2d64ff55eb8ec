// Fuzzing the parser against an independent, regex-based reference of the same grammar.
// Pure domain code: no servers needed. Deterministic: a seeded PRNG builds every line.
import { isDeepStrictEqual } from 'node:util';
import { describe, expect, it } from 'vitest';
import { atIsoOf, parseLine, parseWatchBytes, watchRead } from '../lib/events/parser.ts';
import { buildBatch } from '../lib/ingest/batch.ts';
import { Rng } from '../lib/random.ts';
import { formatEvent } from '../lib/events/format.ts';
import type { LogEvent, ParseResult } from '../lib/events/types.ts';

const MAX_INT4 = 2147483647;


// ---------------------------------------------------------------------------------------------
// Reference: the contract written as regular expressions, slow and obvious. If it and the parser
// disagree on any line, one of them misreads the grammar.
const SLUG = /^(?=.*[a-z0-9])[a-z0-9+\-._'&:!%]{1,200}$/;
const TS = /^(\d{4})-(\d{2})-(\d{2})T([01]\d|2[0-3]):([0-5]\d):([0-5]\d)(?:\.(\d{1,9}))?$/;

function refTime(ts: string): { atIso: string; atMs: number } | null {
  const m = TS.exec(ts);
  if (!m) return null;
  const frac = m[7] ?? '';
  const base = `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}`;
  if (m[1] === '0000') return null;
  const atMs = Date.parse(`${base}.${frac.slice(0, 3).padEnd(3, '0')}Z`);
  // Date.parse rolls Feb 30 over into March: a real date prints back unchanged.
  if (Number.isNaN(atMs) || new Date(atMs).toISOString().slice(0, 19) !== base) return null;
  return { atIso: `${base}${frac ? '.' + frac.slice(0, 6) : ''}Z`, atMs };
}

function refUint(s: string, max: number): number | null {
  return /^\d+$/.test(s) && Number(s) <= max ? Number(s) : null;
}

function refIds(text: string): string[] | null {
  if (text === '') return [];
  const ids = text.split(',').map((x) => x.replace(/^ +| +$/g, ''));
  return ids.every((id) => SLUG.test(id)) ? ids : null;
}

function reference(raw: string): LogEvent | null {
  const line = raw.trim();
  if (line.length === 0 || line.length > 4096) return null;
  const m = /^([^,]*),([^,]*),(.*)$/s.exec(line);
  if (!m) return null;
  const at = refTime(m[1]);
  const userId = refUint(m[2], MAX_INT4);
  if (!at || userId === null) return null;
  const req = m[3];
  let r: RegExpExecArray | null;
  if ((r = /^GET \/data\/m\/([^/,]*)\/(\d+)\.mpg$/.exec(req))) {
    const minute = refUint(r[2], 100_000);
    return SLUG.test(r[1]) && minute !== null ? { kind: 'watch', ...at, userId, movieId: r[1], minute } : null;
  }
  if ((r = /^GET \/rate\/([^=,]*)=([1-5])$/.exec(req))) {
    return SLUG.test(r[1]) ? { kind: 'rate', ...at, userId, movieId: r[1], rating: Number(r[2]) as 1 | 2 | 3 | 4 | 5 } : null;
  }
  if (req === 'GET /create_account') return { kind: 'account', ...at, userId };
  r = /^recommendation request ([\x21-\x2b\x2d-\x7e]{1,255}), status (\d{1,3}), result:(?:(.*),| *)( *)(\d+) *ms$/s.exec(req);
  if (!r) return null;
  const status = Number(r[2]);
  const latencyMs = refUint(r[5], MAX_INT4);
  if (latencyMs === null) return null;
  const text = (r[3] ?? '').replace(/^ +| +$/g, '');
  const base = { kind: 'recommendation' as const, ...at, userId, server: r[1], status, latencyMs };
  const ids = status === 0 ? null : refIds(text);
  if (ids) return { ...base, movieIds: ids, error: null };
  if (status >= 200 && status < 300) return null;
  if (text.includes('\u0000')) return null;
  return { ...base, movieIds: [], error: text };
}

// ---------------------------------------------------------------------------------------------
// Invariants every accepted event must hold, checked without the parser's code.
function checkEvent(e: LogEvent, raw: string): void {
  const line = raw.trim();
  expect(line.length).toBeGreaterThan(0);
  expect(line.length).toBeLessThanOrEqual(4096);
  expect(e.atIso).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$/);
  expect(line.startsWith(e.atIso.slice(0, -1))).toBe(true);
  expect(Number.isSafeInteger(e.atMs)).toBe(true);
  expect(new Date(e.atMs).toISOString().slice(0, 19)).toBe(e.atIso.slice(0, 19));
  expect(Number.isInteger(e.userId) && e.userId >= 0 && e.userId <= MAX_INT4).toBe(true);
  switch (e.kind) {
    case 'watch':
      expect(e.movieId).toMatch(SLUG);
      expect(Number.isInteger(e.minute) && e.minute >= 0 && e.minute <= 100_000).toBe(true);
      break;
    case 'rate':
      expect(e.movieId).toMatch(SLUG);
      expect([1, 2, 3, 4, 5]).toContain(e.rating);
      break;
    case 'account':
      break;
    case 'recommendation':
      expect(e.server).toMatch(/^[\x21-\x2b\x2d-\x7e]{1,255}$/);
      expect(Number.isInteger(e.status) && e.status >= 0 && e.status <= 999).toBe(true);
      expect(Number.isInteger(e.latencyMs) && e.latencyMs >= 0 && e.latencyMs <= MAX_INT4).toBe(true);
      for (const id of e.movieIds) expect(id).toMatch(SLUG);
      if (e.error !== null) {
        expect(e.movieIds).toEqual([]);
        expect(e.error.includes('\u0000')).toBe(false);
        expect(e.status >= 200 && e.status < 300).toBe(false);
      } else {
        expect(e.status).not.toBe(0);
      }
      break;
    default:
      throw new Error(`unknown kind ${(e as { kind: string }).kind}`);
  }
  // The canonical line is a fixed point: it parses back to the very same event.
  expect(parseLine(formatEvent(e))).toEqual({ ok: true, event: e });
}

const REASONS = new Set([
  'empty line', 'wrong number of fields', 'bad timestamp', 'timestamp out of range', 'missing user id', 'bad user id',
  'negative user id', 'user id out of range', 'unknown request', 'bad watch request', 'bad movie id', 'bad minute',
  'minute out of range', 'bad rate request', 'bad rating', 'rating out of range 1-5', 'bad recommendation request',
  'bad server', 'bad status', 'missing latency', 'bad latency', 'latency out of range', 'bad movie id in result',
  'NUL character in error text',
]);

// ---------------------------------------------------------------------------------------------
// Line generators: valid lines of every kind, then mutations aimed at the grammar's joints.
const rng = Rng.unhashed(20250102);
const rnd = () => rng.next();
const int = (n: number) => Math.floor(rnd() * n);
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
const pad = (n: number, w: number) => String(n).padStart(w, '0');

function timestamp(): string {
  // Mostly real dates, sometimes impossible ones (day 29-31 in short months, hour 24, second 60).
  const y = pick([1970, 1999, 2000, 2023, 2024, 2025, 2100, 1, 9999, int(10000)]);
  const mo = rnd() < 0.95 ? 1 + int(12) : pick([0, 13, 99]);
  const d = rnd() < 0.8 ? 1 + int(28) : pick([29, 30, 31, 0, 32]);
  const h = rnd() < 0.97 ? int(24) : 24;
  const mi = int(60);
  const s = rnd() < 0.97 ? int(60) : 60;
  const digits = int(10);
  const frac = digits === 0 ? '' : '.' + Array.from({ length: digits }, () => int(10)).join('');
  return `${pad(y, 4)}-${pad(mo, 2)}-${pad(d, 2)}T${pad(h, 2)}:${pad(mi, 2)}:${pad(s, 2)}${frac}`;
}

const WORDS = ['the', 'shawshank', 'redemption', 'matrix', 'up', 'inception', 'amelie', "schindler's", 'spider-man', 'l.a.', 'tom', '&', 'x', '2'];
function slug(): string {
  const words = Array.from({ length: 1 + int(5) }, () => pick(WORDS));
  if (rnd() < 0.7) words.push(String(1900 + int(130)));
  return words.join('+');
}

function userId(): string {
  return String(pick([0, 1, 42, 12345, 999999, MAX_INT4, MAX_INT4 + 1, int(1_000_000)]));
}

const SERVERS = ['17645-team12.isri.cmu.edu:8082', 'localhost:8082', '127.0.0.1:3001'];
const ERRORS = [
  'java.net.ConnectException: Connection refused (Connection refused)',
  'java.net.SocketTimeoutException: Read timed out, after: 600 ms',
  'org.apache.http.NoHttpResponseException: 128.2.204.215:8082 failed to respond',
  'Internal Server Error',
  '',
];

function validLine(): string {
  const head = `${timestamp()},${userId()},`;
  switch (int(4)) {
    case 0: return `${head}GET /data/m/${slug()}/${int(200)}.mpg`;
    case 1: return `${head}GET /rate/${slug()}=${1 + int(5)}`;
    case 2: return `${head}GET /create_account`;
    default: {
      const status = pick([0, 200, 200, 200, 404, 500, 503]);
      const sep = pick([', ', ',', ' , ', ',  ']);
      const result = status === 0 || (status >= 400 && rnd() < 0.5)
        ? pick(ERRORS) + (rnd() < 0.3 ? `, at x: ${int(9)}` : '')
        : Array.from({ length: int(21) }, slug).join(sep);
      return `${head}recommendation request ${pick(SERVERS)}, status ${status}, result: ${result}, ${int(1000)} ms`;
    }
  }
}

const TOKENS = [',', ', ', ' ', '.', ':', '-', '/', '=', '+', 'T', 'Z', 'ms', ' ms', '.mpg', 'GET ', '/data/m/', '/rate/',
  'status ', 'result:', 'recommendation request ', '0', '9', '00', '-1', '2147483648', '\u0000', '\t', '\r\n', 'é', 'A', '\ufeff', "'", '&', '%'];

function mutate(line: string): string {
  const i = int(line.length + 1);
  switch (int(9)) {
    case 0: return line.slice(0, i) + line.slice(i + 1 + int(3)); // delete
    case 1: return line.slice(0, i) + pick(TOKENS) + line.slice(i); // insert a grammar token
    case 2: return line.slice(0, i) + pick(TOKENS) + line.slice(i + 1); // replace a character
    case 3: return line.slice(0, i); // truncate
    case 4: return line.slice(i) + line.slice(0, i); // rotate
    case 5: { // swap two comma-separated fields
      const f = line.split(',');
      const a = int(f.length), b = int(f.length);
      [f[a], f[b]] = [f[b], f[a]];
      return f.join(',');
    }
    case 6: return line.replace(/\d/g, (d) => (rnd() < 0.15 ? String(int(10)) : d)); // perturb digits
    case 7: return pick([' ', '\t', '\r\n', '\n', '\ufeff', '']) + line + pick([' ', '\r\n', '\n', '\t ', '']);
    default: return line.slice(0, i) + line.slice(int(line.length)); // splice with itself
  }
}

function randomGarbage(): string {
  const n = int(rnd() < 0.02 ? 6000 : 80);
  let s = '';
  for (let k = 0; k < n; k++) s += rnd() < 0.5 ? pick(TOKENS) : String.fromCharCode(int(0x300));
  return s;
}

function lines(count: number): string[] {
  const out: string[] = [];
  while (out.length < count) {
    const roll = rnd();
    if (roll < 0.25) out.push(validLine());
    else if (roll < 0.9) {
      let l = validLine();
      for (let k = 1 + int(3); k > 0; k--) l = mutate(l);
      out.push(l);
    } else if (roll < 0.98) out.push(randomGarbage());
    else out.push(validLine().padEnd(4090 + int(12), pick(['a', ' ', ', 1 ms'])));
  }
  return out;
}

describe('parser fuzz', () => {
  const corpus = lines(30_000);

  it('never throws, and every line is a valid event or a rejection with a known reason', () => {
    let accepted = 0;
    const kinds = new Map<string, number>();
    const reasons = new Map<string, number>();
    for (const line of corpus) {
      let r: ParseResult;
      try {
        r = parseLine(line);
      } catch (err) {
        throw new Error(`parseLine threw on ${JSON.stringify(line)}: ${String(err)}`);
      }
      if (r.ok) {
        accepted++;
        kinds.set(r.event.kind, (kinds.get(r.event.kind) ?? 0) + 1);
        checkEvent(r.event, line);
      } else {
        expect(typeof r.reason).toBe('string');
        expect(r.reason.length).toBeGreaterThan(0);
        const key = r.reason.startsWith('line too long (') ? 'line too long' : r.reason;
        if (key === 'line too long') expect(r.reason).toMatch(/^line too long \(\d+ > 4096\)$/);
        else expect(REASONS.has(key), `unexpected reason "${r.reason}" for ${JSON.stringify(line)}`).toBe(true);
        reasons.set(key, (reasons.get(key) ?? 0) + 1);
      }
    }
    // The corpus must exercise both sides and every kind, or the test proves little.
    expect(corpus.length).toBeGreaterThanOrEqual(10_000);
    expect(accepted).toBeGreaterThan(corpus.length * 0.15);
    expect(corpus.length - accepted).toBeGreaterThan(corpus.length * 0.3);
    for (const k of ['watch', 'rate', 'recommendation', 'account']) expect(kinds.get(k) ?? 0, k).toBeGreaterThan(100);
    expect(reasons.size).toBeGreaterThanOrEqual(18);
  });

  it('agrees with the regex reference on every line', () => {
    const disagreements: string[] = [];
    for (const line of corpus) {
      const r = parseLine(line);
      const ref = reference(line);
      const same = r.ok ? isDeepStrictEqual(ref, r.event) : ref === null;
      if (!same && disagreements.length < 10) {
        disagreements.push(`${JSON.stringify(line)}\n  parser: ${JSON.stringify(r)}\n  reference: ${JSON.stringify(ref)}`);
      }
    }
    expect(disagreements, disagreements.join('\n')).toEqual([]);
  });

  it('the ingest\'s watch path over bytes reads exactly what parseLine reads, and takes every canonical watch line', () => {
    const wrong: string[] = [];
    let fast = 0;
    for (const line of corpus) {
      const bytes = Buffer.from(line, 'utf8');
      const text = bytes.toString('utf8');
      const r = parseLine(text);
      if (parseWatchBytes(bytes)) {
        fast++;
        const read = { kind: 'watch', atIso: atIsoOf(bytes), atMs: watchRead.atMs, userId: watchRead.userId, movieId: bytes.toString('latin1', watchRead.movieStart, watchRead.movieEnd), minute: watchRead.minute };
        if (!r.ok || !isDeepStrictEqual(read, r.event)) wrong.push(`${JSON.stringify(line)}: bytes ${JSON.stringify(read)}, parseLine ${JSON.stringify(r)}`);
      } else if (r.ok && r.event.kind === 'watch' && text === text.trim()) {
        wrong.push(`${JSON.stringify(line)}: a canonical watch line the byte path left to parseLine`);
      }
    }
    expect(wrong.slice(0, 10), wrong.slice(0, 10).join('\n')).toEqual([]);
    expect(fast).toBeGreaterThan(1000);
  });

  it('a batch built from the lines\' bytes equals the batch built from their text', () => {
    // Repeated users and movies, so that the rows merge lines from both paths.
    const chunk = 500;
    for (let start = 0; start < corpus.length; start += chunk) {
      const part = corpus.slice(start, start + chunk);
      const asBytes = part.map((line, i) => ({ offset: start + i, value: Buffer.from(line, 'utf8') }));
      const asText = asBytes.map((m) => ({ offset: m.offset, value: m.value.toString('utf8') }));
      const a = buildBatch(asBytes);
      const b = buildBatch(asText);
      expect(isDeepStrictEqual(a, b), `batch at ${start} differs`).toBe(true);
    }
  });
});
