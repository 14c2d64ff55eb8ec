/**
 * The gateway's upstream client (services/gateway/upstream.ts) against a loopback server of its
 * own: an aborted call fails at once with kind `aborted` and its socket is closed (the slot sees
 * the connection go, nothing completes late), an already-aborted signal never connects, and a call
 * that answers leaves no listener behind on the caller's signal.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { getEventListeners } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UpstreamError, Upstreams } from '../services/gateway/upstream.ts';

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
