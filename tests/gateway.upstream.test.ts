/**
 * The gateway's upstream client (services/gateway/upstream.ts) against a loopback server of its
 * own: an aborted call fails at once with kind `aborted` and its socket is closed (the slot sees
 * the connection go, nothing completes late), an already-aborted signal never connects, and a call
 * that answers leaves no listener behind on the caller's signal. checkAnswer (one scan, no arrays)
 * and answerIds agree with the straightforward split-and-check they replaced, on generated bodies.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { getEventListeners } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { answerIds, checkAnswer, UpstreamError, Upstreams, type UpstreamAnswer } from '../services/gateway/upstream.ts';

let server: http.Server;
let base: string;
let arrived = 0;
let closed = 0;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    arrived++;
    // /hold never answers: only the client going away ends it.
    if (req.url === '/hold') { req.socket.once('close', () => { closed++; }); return; }
    res.writeHead(200, { 'content-type': 'text/plain' }).end('a,b,c');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

const until = async (ok: () => boolean, ms = 2000) => {
  const end = Date.now() + ms;
  while (!ok() && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
  return ok();
};

describe('Upstreams.get with an AbortSignal', () => {
  it('fails with kind aborted as soon as the signal aborts, and closes the socket', async () => {
    const up = new Upstreams();
    const ac = new AbortController();
    const before = closed;
    const t0 = performance.now();
    const call = up.get(base, 'hold', 10_000, 'text/plain', ac.signal);
    setTimeout(() => ac.abort(), 50);
    const err = await call.then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(UpstreamError);
    expect((err as UpstreamError).kind).toBe('aborted');
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(up.pending(base)).toBe(0);
    expect(await until(() => closed === before + 1)).toBe(true);
    up.close();
  });

  it('never connects with a signal that is already aborted', async () => {
    const up = new Upstreams();
    const ac = new AbortController();
    ac.abort();
    const before = arrived;
    const err = await up.get(base, 'ok', 1000, 'text/plain', ac.signal).then(() => undefined, (e: unknown) => e);
    expect((err as UpstreamError).kind).toBe('aborted');
    await new Promise((r) => setTimeout(r, 50));
    expect(arrived).toBe(before);
    expect(up.pending(base)).toBe(0);
    up.close();
  });

  it('answers as before with a signal that does not abort, and removes its listener', async () => {
    const up = new Upstreams();
    const ac = new AbortController();
    const a = await up.get(base, 'ok', 1000, 'text/plain', ac.signal);
    expect(a).toMatchObject({ status: 200, body: 'a,b,c' });
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
    // A timeout still fails as a timeout, not as an abort.
    const err = await up.get(base, 'hold', 30, 'text/plain', ac.signal).then(() => undefined, (e: unknown) => e);
    expect((err as UpstreamError).kind).toBe('timeout');
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
    up.close();
  });
});

/** The contract check as it was written before checkAnswer: the reference for the fast one. */
function referenceParse(a: UpstreamAnswer): string[] {
  if (a.status !== 200) throw new UpstreamError('status', 'status');
  const line = a.body.replace(/\r?\n$/, '');
  if (line.includes('\n')) throw new UpstreamError('bad_answer', 'lines');
  if (line.trimStart().startsWith('{') || line.trimStart().startsWith('[')) throw new UpstreamError('bad_answer', 'json');
  const ids = line.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (ids.length > 20) throw new UpstreamError('bad_answer', 'count');
  return ids;
}

describe('checkAnswer and answerIds (the recommendation contract)', () => {
  const outcome = (f: () => string[]): string => {
    try { return JSON.stringify(f()); } catch (err) { return `throws ${(err as UpstreamError).kind}`; }
  };
  it('accept and reject exactly what the split-and-check did, with the same ids', () => {
    const parts = ['a', 'movie+1', ' ', ',', ',', '\n', '\r', '\r\n', '{', '[', '\t', '\u00a0', '\u2003', '\ufeff', 'x y', '"q"', 'é'];
    let seed = 7;
    const rnd = (n: number) => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n; };
    const bodies = ['', '\n', 'a\n', 'a\r\n', 'a\n\n', ' {"a":1}', ',[1]', Array.from({ length: 20 }, (_, i) => `m${i}`).join(','), Array.from({ length: 21 }, (_, i) => `m${i}`).join(',') + '\n'];
    for (let k = 0; k < 5000; k++) bodies.push(Array.from({ length: rnd(60) }, () => parts[rnd(parts.length)]).join(''));
    for (const body of bodies) {
      for (const status of [200, 500]) {
        const a: UpstreamAnswer = { status, body, contentType: 'text/plain', ms: 1 };
        expect(outcome(() => { checkAnswer(a); return answerIds(a.body); }), JSON.stringify(body)).toBe(outcome(() => referenceParse(a)));
      }
    }
  });
});
