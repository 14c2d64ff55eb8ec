// Pure domain code: no servers needed.
import { describe, expect, it } from 'vitest';
import { parseLine } from '../lib/events/parser.ts';
import { Rng } from '../lib/random.ts';
import { atFromMs, formatEvent } from '../lib/events/format.ts';
import { isValidSlug, makeSlug, makeUniqueSlug } from '../lib/events/slug.ts';
import type { LogEvent, RecommendationEvent } from '../lib/events/types.ts';

const SERVER = '17645-team12.isri.cmu.edu:8082';

function event(line: string): LogEvent {
  const r = parseLine(line);
  if (!r.ok) throw new Error(`expected an event from ${JSON.stringify(line)}, got rejection "${r.reason}"`);
  return r.event;
}

function reason(line: string): string {
  const r = parseLine(line);
  if (r.ok) throw new Error(`expected a rejection of ${JSON.stringify(line)}, got ${JSON.stringify(r.event)}`);
  return r.reason;
}

describe('line kinds', () => {
  it('parses a watch line', () => {
    expect(event('2025-01-02T10:15:30.123,12345,GET /data/m/the+shawshank+redemption+1994/37.mpg')).toEqual({
      kind: 'watch', atIso: '2025-01-02T10:15:30.123Z', atMs: Date.UTC(2025, 0, 2, 10, 15, 30, 123),
      userId: 12345, movieId: 'the+shawshank+redemption+1994', minute: 37,
    });
  });

  it('parses a rate line', () => {
    expect(event('2025-01-02T10:15:30,12345,GET /rate/inception+2010=4')).toEqual({
      kind: 'rate', atIso: '2025-01-02T10:15:30Z', atMs: Date.UTC(2025, 0, 2, 10, 15, 30), userId: 12345,
      movieId: 'inception+2010', rating: 4,
    });
  });

  it('parses a recommendation line with a list', () => {
    expect(event(`2025-01-02T10:15:30.123456789,12345,recommendation request ${SERVER}, status 200, result: inception+2010, the+matrix+1999, up+2009, 120 ms`)).toEqual({
      kind: 'recommendation', atIso: '2025-01-02T10:15:30.123456Z', atMs: Date.UTC(2025, 0, 2, 10, 15, 30, 123),
      userId: 12345, server: SERVER, status: 200, movieIds: ['inception+2010', 'the+matrix+1999', 'up+2009'],
      error: null, latencyMs: 120,
    });
  });

  it('parses a status-0 recommendation whose error text holds commas and colons', () => {
    const e = event(`2025-01-02T10:15:30.5,12345,recommendation request ${SERVER}, status 0, result: java.net.ConnectException: Connection refused (Connection refused), at x: y, 600 ms`);
    expect(e).toEqual({
      kind: 'recommendation', atIso: '2025-01-02T10:15:30.5Z', atMs: Date.UTC(2025, 0, 2, 10, 15, 30, 500),
      userId: 12345, server: SERVER, status: 0, movieIds: [],
      error: 'java.net.ConnectException: Connection refused (Connection refused), at x: y', latencyMs: 600,
    });
  });

  it('parses a create-account line', () => {
    expect(event('2025-01-02T10:15:30,12345,GET /create_account')).toEqual({
      kind: 'account', atIso: '2025-01-02T10:15:30Z', atMs: Date.UTC(2025, 0, 2, 10, 15, 30), userId: 12345,
    });
  });
});

describe('timestamps', () => {
  const base = Date.UTC(2025, 0, 2, 10, 15, 30);
  const cases: Array<[string, string, number]> = [
    ['', '2025-01-02T10:15:30Z', base],
    ['.1', '2025-01-02T10:15:30.1Z', base + 100],
    ['.12', '2025-01-02T10:15:30.12Z', base + 120],
    ['.123', '2025-01-02T10:15:30.123Z', base + 123],
    ['.1234', '2025-01-02T10:15:30.1234Z', base + 123],
    ['.12345', '2025-01-02T10:15:30.12345Z', base + 123],
    ['.123456', '2025-01-02T10:15:30.123456Z', base + 123],
    ['.1234567', '2025-01-02T10:15:30.123456Z', base + 123],
    ['.12345678', '2025-01-02T10:15:30.123456Z', base + 123],
    ['.999999999', '2025-01-02T10:15:30.999999Z', base + 999],
    ['.000000001', '2025-01-02T10:15:30.000000Z', base],
  ];
  it.each(cases)('fraction %j keeps microseconds (truncated) and epoch ms', (frac, iso, ms) => {
    const e = event(`2025-01-02T10:15:30${frac},1,GET /create_account`);
    expect(e.atIso).toBe(iso);
    expect(e.atMs).toBe(ms);
    expect(Date.parse(e.atIso)).toBe(ms); // the Z form is a valid ISO instant
  });

  it('agrees with Date.UTC across calendar corners', () => {
    const corners: Array<[string, number]> = [
      ['1970-01-01T00:00:00', 0],
      ['1969-12-31T23:59:59.999', -1],
      ['2000-02-29T12:00:00', Date.UTC(2000, 1, 29, 12)],
      ['2024-02-29T23:59:59', Date.UTC(2024, 1, 29, 23, 59, 59)],
      ['2025-12-31T23:59:59.999', Date.UTC(2025, 11, 31, 23, 59, 59, 999)],
      ['9999-12-31T23:59:59', Date.UTC(9999, 11, 31, 23, 59, 59)],
      ['0001-01-01T00:00:00', Date.parse('0001-01-01T00:00:00Z')],
      ['1900-03-01T00:00:00', Date.UTC(1900, 2, 1)],
    ];
    for (const [ts, ms] of corners) expect(event(`${ts},1,GET /create_account`).atMs, ts).toBe(ms);
  });

  it.each([
    ['2025-02-30T10:15:30', 'timestamp out of range'],
    ['2023-02-29T10:15:30', 'timestamp out of range'],
    ['1900-02-29T10:15:30', 'timestamp out of range'],
    ['2025-04-31T10:15:30', 'timestamp out of range'],
    ['2025-13-01T10:15:30', 'timestamp out of range'],
    ['2025-00-01T10:15:30', 'timestamp out of range'],
    ['2025-01-00T10:15:30', 'timestamp out of range'],
    ['2025-01-32T10:15:30', 'timestamp out of range'],
    ['2025-01-02T24:00:00', 'timestamp out of range'],
    ['2025-01-02T10:60:00', 'timestamp out of range'],
    ['2025-01-02T10:15:60', 'timestamp out of range'],
    ['0000-01-01T00:00:00', 'timestamp out of range'],
    ['2025-01-02T10:15:30.', 'bad timestamp'],
    ['2025-01-02T10:15:30.1234567890', 'bad timestamp'],
    ['2025-01-02T10:15:30.12a', 'bad timestamp'],
    ['2025-01-02T10:15:30Z', 'bad timestamp'],
    ['2025-01-02T10:15:30+01:00', 'bad timestamp'],
    ['2025-01-02 10:15:30', 'bad timestamp'],
    ['2025-1-02T10:15:30', 'bad timestamp'],
    ['2025-01-02T10:15', 'bad timestamp'],
    ['20250102T101530', 'bad timestamp'],
    ['2025-01-02', 'bad timestamp'],
    ['', 'bad timestamp'],
    ['yesterday', 'bad timestamp'],
    ['+025-01-02T10:15:30', 'bad timestamp'],
  ])('rejects timestamp %j', (ts, why) => {
    expect(reason(`${ts},1,GET /create_account`)).toBe(why);
  });
});

describe('fields', () => {
  it('accepts user ids from 0 to 2^31-1, leading zeros included', () => {
    expect(event('2025-01-02T10:15:30,0,GET /create_account').userId).toBe(0);
    expect(event('2025-01-02T10:15:30,007,GET /create_account').userId).toBe(7);
    expect(event('2025-01-02T10:15:30,2147483647,GET /create_account').userId).toBe(2147483647);
  });

  it.each([
    ['2147483648', 'user id out of range'],
    ['99999999999999999999999', 'user id out of range'],
    ['-1', 'negative user id'],
    ['-0', 'negative user id'],
    ['', 'missing user id'],
    ['12a', 'bad user id'],
    ['1.5', 'bad user id'],
    ['+5', 'bad user id'],
    [' 5', 'bad user id'],
    ['1e3', 'bad user id'],
    ['-', 'bad user id'],
  ])('rejects user id %j', (uid, why) => {
    expect(reason(`2025-01-02T10:15:30,${uid},GET /create_account`)).toBe(why);
  });

  it('accepts slugs without a year and with course punctuation', () => {
    for (const id of ['inception', 'up', '9', 'amelie+2001', "schindler's+list+1993", 'spider-man+2002', 'l.a.+confidential+1997', 'tom+&+jerry', 'star+wars:+episode+iv', 'what%27s+up', 'a_b', 'wow!+2003']) {
      expect(event(`2025-01-02T10:15:30,1,GET /data/m/${id}/0.mpg`)).toMatchObject({ kind: 'watch', movieId: id, minute: 0 });
      expect(event(`2025-01-02T10:15:30,1,GET /rate/${id}=5`)).toMatchObject({ kind: 'rate', movieId: id, rating: 5 });
    }
  });

  it.each([
    ['The+Matrix+1999', 'upper case'],
    ['the matrix', 'space'],
    ['amélie', 'non-ASCII'],
    ['', 'empty'],
    ['+', 'no letter or digit'],
    ['..', 'no letter or digit'],
    ['a'.repeat(201), 'over 200 chars'],
    ['a;b', 'semicolon'],
    ['a"b', 'quote'],
  ])('rejects movie id %j (%s)', (id) => {
    expect(reason(`2025-01-02T10:15:30,1,GET /data/m/${id}/3.mpg`)).toBe('bad movie id');
    expect(reason(`2025-01-02T10:15:30,1,GET /rate/${id}=3`)).toBe('bad movie id');
  });

  it('accepts a 200-char slug', () => {
    expect(event(`2025-01-02T10:15:30,1,GET /rate/${'a'.repeat(200)}=3`).kind).toBe('rate');
  });

  it('reads minutes up to the bound', () => {
    expect(event('2025-01-02T10:15:30,1,GET /data/m/up+2009/100000.mpg')).toMatchObject({ minute: 100000 });
    expect(event('2025-01-02T10:15:30,1,GET /data/m/up+2009/007.mpg')).toMatchObject({ minute: 7 });
  });

  it.each([
    ['GET /data/m/up+2009/100001.mpg', 'minute out of range'],
    ['GET /data/m/up+2009/99999999999999999999.mpg', 'minute out of range'],
    ['GET /data/m/up+2009/-1.mpg', 'bad minute'],
    ['GET /data/m/up+2009/1.5.mpg', 'bad minute'],
    ['GET /data/m/up+2009/x.mpg', 'bad minute'],
    ['GET /data/m/up+2009/.mpg', 'bad minute'],
    ['GET /data/m/up+2009/3/4.mpg', 'bad minute'],
    ['GET /data/m/up+2009/3.mp4', 'bad watch request'],
    ['GET /data/m/up+2009/3', 'bad watch request'],
    ['GET /data/m/up+2009', 'bad watch request'],
    ['GET /data/m/up+2009/mpg', 'bad watch request'],
    ['GET /rate/up+2009=0', 'rating out of range 1-5'],
    ['GET /rate/up+2009=6', 'rating out of range 1-5'],
    ['GET /rate/up+2009=10', 'rating out of range 1-5'],
    ['GET /rate/up+2009=-3', 'rating out of range 1-5'],
    ['GET /rate/up+2009=4.5', 'bad rating'],
    ['GET /rate/up+2009=', 'bad rating'],
    ['GET /rate/up+2009=four', 'bad rating'],
    ['GET /rate/up+2009=4=4', 'bad rating'],
    ['GET /rate/up+2009', 'bad rate request'],
  ])('rejects %j: %s', (req, why) => {
    expect(reason(`2025-01-02T10:15:30,1,${req}`)).toBe(why);
  });

  it('accepts every rating 1-5', () => {
    for (const n of [1, 2, 3, 4, 5]) expect(event(`2025-01-02T10:15:30,1,GET /rate/up+2009=${n}`)).toMatchObject({ rating: n });
  });
});

describe('recommendation lines', () => {
  const head = `2025-01-02T10:15:30,42,recommendation request ${SERVER}`;
  const rec = (tail: string) => event(`${head}, ${tail}`) as RecommendationEvent;

  it('tolerates "," without a space and extra spaces between ids', () => {
    expect(rec('status 200, result: a+1999,b+2000 ,  c ,d, 5 ms').movieIds).toEqual(['a+1999', 'b+2000', 'c', 'd']);
    expect(rec('status 200, result:a,b,7 ms')).toMatchObject({ movieIds: ['a', 'b'], latencyMs: 7 });
    expect(rec('status 200, result: a, b,   9   ms')).toMatchObject({ movieIds: ['a', 'b'], latencyMs: 9 });
    expect(rec('status 200, result: a, b, 9ms')).toMatchObject({ movieIds: ['a', 'b'], latencyMs: 9 });
  });

  it('reads a single id, twenty ids and an empty answer', () => {
    expect(rec('status 200, result: up+2009, 1 ms').movieIds).toEqual(['up+2009']);
    const twenty = Array.from({ length: 20 }, (_, i) => `movie+${i}+2001`);
    expect(rec(`status 200, result: ${twenty.join(', ')}, 599 ms`).movieIds).toEqual(twenty);
    expect(rec('status 200, result: , 3 ms')).toMatchObject({ movieIds: [], error: null, latencyMs: 3 });
    expect(rec('status 200, result: 3 ms')).toMatchObject({ movieIds: [], error: null, latencyMs: 3 });
  });

  it('keeps status-0 error text whole: commas, colons, "ms" and digits inside', () => {
    expect(rec('status 0, result: timeout: waited 600 ms, gave up, code: 7, 601 ms')).toMatchObject({
      status: 0, movieIds: [], error: 'timeout: waited 600 ms, gave up, code: 7', latencyMs: 601,
    });
    expect(rec('status 0, result: , 0 ms')).toMatchObject({ status: 0, error: '', latencyMs: 0 });
    expect(rec('status 0, result: up+2009, 10 ms')).toMatchObject({ status: 0, movieIds: [], error: 'up+2009' });
  });

  it('keeps a non-2xx body as error text, and ids when they are ids', () => {
    expect(rec('status 500, result: Internal Server Error, 12 ms')).toMatchObject({ status: 500, movieIds: [], error: 'Internal Server Error' });
    expect(rec('status 404, result: a, b, 12 ms')).toMatchObject({ status: 404, movieIds: ['a', 'b'], error: null });
  });

  it.each([
    [`${head}, status 200, result: a, b, 12 ms`.replace(SERVER, ''), 'bad server'],
    [`2025-01-02T10:15:30,42,recommendation request bad server, status 200, result: a, 1 ms`, 'bad server'],
    [`2025-01-02T10:15:30,42,recommendation request ${'s'.repeat(256)}, status 200, result: a, 1 ms`, 'bad server'],
    [`${head}, status 2000, result: a, 1 ms`, 'bad status'],
    [`${head}, status , result: a, 1 ms`, 'bad status'],
    [`${head}, status OK, result: a, 1 ms`, 'bad status'],
    [`${head}, status -1, result: a, 1 ms`, 'bad status'],
    [`${head}, status 200 result: a, 1 ms`, 'bad status'],
    [`${head}, status 200, a, 1 ms`, 'bad recommendation request'],
    [`${head} status 200, result: a, 1 ms`, 'bad server'],
    [`${head}`, 'bad recommendation request'],
    [`${head} status 200 result: a 1 ms`, 'bad recommendation request'],
    [`${head}, result: a, 1 ms`, 'bad recommendation request'],
    [`${head}, status 200, result: a, b`, 'missing latency'],
    [`${head}, status 200, result: a, b, 12`, 'missing latency'],
    [`${head}, status 200, result: a, b, twelve ms`, 'bad latency'],
    [`${head}, status 200, result: a, b, 1.5 ms`, 'bad latency'],
    [`${head}, status 200, result: a, b, -5 ms`, 'bad latency'],
    [`${head}, status 200, result: a, b, ms`, 'bad latency'],
    [`${head}, status 200, result: a, b 12 ms`, 'bad latency'],
    [`${head}, status 200, result: a, b, 99999999999 ms`, 'latency out of range'],
    [`${head}, status 200, result: a, B, 1 ms`, 'bad movie id in result'],
    [`${head}, status 200, result: a,, b, 1 ms`, 'bad movie id in result'],
    [`${head}, status 200, result: a b, 1 ms`, 'bad movie id in result'],
    [`${head}, status 0, result: nul\u0000here, 1 ms`, 'NUL character in error text'],
  ])('rejects %j: %s', (line, why) => {
    expect(reason(line)).toBe(why);
  });
});

describe('whole lines', () => {
  it('trims surrounding whitespace including CRLF, tabs and a BOM', () => {
    const plain = event('2025-01-02T10:15:30,1,GET /rate/up+2009=3');
    for (const wrapped of ['  2025-01-02T10:15:30,1,GET /rate/up+2009=3  ', '2025-01-02T10:15:30,1,GET /rate/up+2009=3\r\n', '\t2025-01-02T10:15:30,1,GET /rate/up+2009=3\n', '\ufeff2025-01-02T10:15:30,1,GET /rate/up+2009=3']) {
      expect(event(wrapped)).toEqual(plain);
    }
  });

  it.each([
    ['', 'empty line'],
    ['   \r\n', 'empty line'],
    ['2025-01-02T10:15:30', 'wrong number of fields'],
    ['2025-01-02T10:15:30,1', 'wrong number of fields'],
    ['2025-01-02T10:15:30,1,GET /create_account,extra', 'wrong number of fields'],
    ['2025-01-02T10:15:30,1,GET /rate/up+2009=3,4', 'wrong number of fields'],
    ['2025-01-02T10:15:30,1,GET /data/m/a,b/3.mpg', 'wrong number of fields'],
    ['2025-01-02T10:15:30,1,POST /rate/up+2009=3', 'unknown request'],
    ['2025-01-02T10:15:30,1,GET /delete_account', 'unknown request'],
    ['2025-01-02T10:15:30,1,GET /create_account/', 'unknown request'],
    ['2025-01-02T10:15:30,1,get /create_account', 'unknown request'],
    ['2025-01-02T10:15:30,1,', 'unknown request'],
    ['2025-01-02T10:15:30,1,recommendation', 'unknown request'],
    ['2025-01-02T10:15:30, 1,GET /create_account', 'bad user id'],
    ['2025-01-02T10:15:30,1, GET /create_account', 'unknown request'],
  ])('rejects %j: %s', (line, why) => {
    expect(reason(line)).toBe(why);
  });

  it('rejects overlong lines and says how long', () => {
    const pad = 'a'.repeat(5000 - '2025-01-02T10:15:30,1,GET /data/m//1.mpg'.length);
    const line = `2025-01-02T10:15:30,1,GET /data/m/${pad}/1.mpg`;
    expect(line.length).toBe(5000);
    expect(reason(line)).toBe('line too long (5000 > 4096)');
    // The limit is on the trimmed line: 4096 characters pass the length check.
    const fits = `2025-01-02T10:15:30,${SERVER.length},recommendation request ${SERVER}, status 0, result: `;
    const at4096 = fits + 'x'.repeat(4096 - fits.length - ', 1 ms'.length) + ', 1 ms';
    expect(at4096.length).toBe(4096);
    expect(event(`  ${at4096}  `).kind).toBe('recommendation');
    expect(reason(`${at4096}x`)).toBe('line too long (4097 > 4096)');
  });

  it('never throws on non-string input from a careless caller', () => {
    for (const bad of [null, undefined, 42, {}, Buffer.from('x')]) {
      const r = parseLine(bad as unknown as string);
      expect(r.ok).toBe(false);
    }
  });
});

describe('format', () => {
  const lines = [
    '2025-01-02T10:15:30.123,12345,GET /data/m/the+shawshank+redemption+1994/37.mpg',
    '2025-01-02T10:15:30,12345,GET /rate/inception+2010=4',
    `2025-01-02T10:15:30.123456,12345,recommendation request ${SERVER}, status 200, result: inception+2010, the+matrix+1999, up+2009, 120 ms`,
    `2025-01-02T10:15:30.5,12345,recommendation request ${SERVER}, status 0, result: java.net.ConnectException: Connection refused (Connection refused), at x: y, 600 ms`,
    `2025-01-02T10:15:30.5,12345,recommendation request ${SERVER}, status 200, result: , 4 ms`,
    '2025-01-02T10:15:30,12345,GET /create_account',
  ];
  it.each(lines)('reproduces the canonical line %j exactly', (line) => {
    expect(formatEvent(event(line))).toBe(line);
  });

  it('normalizes what the parser tolerated', () => {
    expect(formatEvent(event(` 2025-01-02T10:15:30.123456789,007,recommendation request ${SERVER}, status 200, result:a ,b,5ms\r\n`)))
      .toBe(`2025-01-02T10:15:30.123456,7,recommendation request ${SERVER}, status 200, result: a, b, 5 ms`);
  });

  it('builds time fields from epoch ms that parse back to the same instant', () => {
    for (const ms of [0, 1735812930123, 1735812930000, 951825600999]) {
      const at = atFromMs(ms);
      const e: LogEvent = { kind: 'watch', ...at, userId: 1, movieId: 'up+2009', minute: 2 };
      expect(event(formatEvent(e))).toEqual(e);
    }
  });

  it('round-trips randomly built events: parse(format(e)) equals e', () => {
    const rng = Rng.unhashed(0x9e3779b9);
    const rnd = () => rng.next();
    const int = (n: number) => Math.floor(rnd() * n);
    const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
    const slugChars = "abcdefghijklmnopqrstuvwxyz0123456789+-._'&:!%";
    const slug = () => {
      const n = 1 + int(rnd() < 0.05 ? 200 : 40);
      let s = String.fromCharCode(97 + int(26));
      while (s.length < n) s += slugChars[int(slugChars.length)];
      return s;
    };
    const errorText = () => pick(['java.net.ConnectException: Connection refused (Connection refused)', 'timeout, after: 600 ms', 'x', '']) + (rnd() < 0.5 ? `, at ${int(99)}: y` : '');
    for (let i = 0; i < 3000; i++) {
      const ms = int(253402300800000); // 1970 .. 9999
      const date = new Date(ms).toISOString().slice(0, 19);
      const digits = int(7); // the parser keeps at most 6
      const frac = digits === 0 ? '' : '.' + String(int(10 ** digits)).padStart(digits, '0');
      const atIso = `${date}${frac}Z`;
      const atMs = Math.floor(ms / 1000) * 1000 + (digits === 0 ? 0 : Math.floor(Number(`0${frac}`) * 1000 + 1e-9));
      const userId = rnd() < 0.1 ? 2147483647 : int(1_000_000);
      let e: LogEvent;
      switch (int(4)) {
        case 0: e = { kind: 'watch', atIso, atMs, userId, movieId: slug(), minute: int(100_001) }; break;
        case 1: e = { kind: 'rate', atIso, atMs, userId, movieId: slug(), rating: (1 + int(5)) as 1 | 2 | 3 | 4 | 5 }; break;
        case 2: e = { kind: 'account', atIso, atMs, userId }; break;
        default: {
          const status = pick([0, 200, 200, 200, 404, 500]);
          const ids = Array.from({ length: int(21) }, slug);
          const failed = status === 0 || (status >= 400 && rnd() < 0.5);
          e = {
            kind: 'recommendation', atIso, atMs, userId, server: pick([SERVER, 'localhost:8082', '127.0.0.1:3001']), status,
            movieIds: failed ? [] : ids, error: failed ? (status === 0 ? errorText() : 'Internal Server Error') : null, latencyMs: int(100_000),
          };
        }
      }
      const line = formatEvent(e);
      if (line.length > 4096) continue;
      const r = parseLine(line);
      expect(r, line).toEqual({ ok: true, event: e });
    }
  });
});

describe('slugs', () => {
  it.each([
    ['The Shawshank Redemption', 1994, 'the+shawshank+redemption+1994'],
    ["Schindler's List", 1993, 'schindlers+list+1993'],
    ['Amélie', 2001, 'amelie+2001'],
    ['Léon: The Professional', 1994, 'leon+the+professional+1994'],
    ['Spider-Man', 2002, 'spider+man+2002'],
    ['Star Wars: Episode IV - A New Hope', 1977, 'star+wars+episode+iv+a+new+hope+1977'],
    ['E.T. the Extra-Terrestrial', 1982, 'et+the+extra+terrestrial+1982'],
    ['Mr. & Mrs. Smith', 2005, 'mr+mrs+smith+2005'],
    ['Das Boot', null, 'das+boot'],
    ['Straße Ærø Œuvre', undefined, 'strasse+aero+oeuvre'],
    ['  Up!!  ', 2009, 'up+2009'],
    ['七人の侍', 1954, 'untitled+1954'],
    ['Crème brûlée ½', 2020, 'creme+brulee+1+2+2020'],
  ])('makeSlug(%j, %j) = %j', (title, year, slug) => {
    expect(makeSlug(title, year)).toBe(slug);
    expect(isValidSlug(slug)).toBe(true);
  });

  it('caps slugs at 200 characters, keeping the year', () => {
    const s = makeSlug(Array.from({ length: 80 }, (_, i) => `word${i}`).join(' '), 1999);
    expect(s.length).toBeLessThanOrEqual(200);
    expect(s.endsWith('+1999')).toBe(true);
    expect(isValidSlug(s)).toBe(true);
    expect(makeSlug('x'.repeat(500), 2000)).toBe('x'.repeat(195) + '+2000');
  });

  it('makes unique slugs for clashing titles', () => {
    const taken = new Set<string>();
    expect(makeUniqueSlug('Hamlet', 1990, taken)).toBe('hamlet+1990');
    expect(makeUniqueSlug('Hamlet', 1990, taken)).toBe('hamlet+1990+2');
    expect(makeUniqueSlug('HAMLET!', 1990, taken)).toBe('hamlet+1990+3');
    expect(taken.size).toBe(3);
  });

  it('validates slugs', () => {
    for (const ok of ['up', 'the+matrix+1999', "a'b-c.d_e&f:g!h%i", '1']) expect(isValidSlug(ok), ok).toBe(true);
    for (const bad of ['', 'Up', 'a b', 'a,b', 'a/b', 'a=b', 'é', '+', '-.-', 'a'.repeat(201)]) expect(isValidSlug(bad), bad).toBe(false);
  });
});
