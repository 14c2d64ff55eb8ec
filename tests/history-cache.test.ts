/**
 * The bookkeeping of the inference service's history cache, without Postgres: what is kept,
 * what a notice drops, reads that overlap a notice, users known to have no history, and a lost
 * connection. (tests/inference.test.ts checks it end to end, with the real triggers.)
 */
import { describe, expect, it } from 'vitest';
import type { HistoryEntry } from '../lib/models/rank.ts';
import { HistoryCache } from '../services/inference/history-cache.ts';

const entry = (movieId: string): HistoryEntry => ({ movieId, minutes: 10, firstAt: 1, lastAt: 2, rating: null, ratedAt: null, runtime: 100 });

/** A read that resolves when told to, counting how many were started. */
function reads() {
  const started: number[] = [];
  const resolvers: ((h: HistoryEntry[]) => void)[] = [];
  return {
    started,
    read: (user: number) => () => { started.push(user); return new Promise<HistoryEntry[]>((r) => resolvers.push(r)); },
    finish: (i: number, h: HistoryEntry[]) => resolvers[i](h),
  };
}

const tick = () => new Promise((r) => setImmediate(r));

function listeningCache(maxUsers = 10, withHistory: number[] = [1, 2, 3]): HistoryCache {
  const c = new HistoryCache('postgresql://unused', maxUsers);
  c.listening();
  c.usersWithHistoryRead(withHistory);
  return c;
}

describe('history cache', () => {
  it('keeps a read history and serves it without another read', async () => {
    const c = listeningCache();
    const r = reads();
    expect(c.peek(1)).toBeUndefined();
    const p = c.load(1, r.read(1));
    r.finish(0, [entry('a')]);
    expect(await p).toEqual([entry('a')]);
    await tick();
    expect(c.peek(1)).toEqual([entry('a')]);
    expect(r.started).toEqual([1]);
    expect(c.stats).toMatchObject({ users: 1, hits: 1, misses: 1 });
  });

  it('drops a kept history on a notice naming its user, and only that one', async () => {
    const c = listeningCache();
    const r = reads();
    const p1 = c.load(1, r.read(1)); const p2 = c.load(2, r.read(2));
    r.finish(0, [entry('a')]); r.finish(1, [entry('b')]);
    await Promise.all([p1, p2]); await tick();
    c.invalidate('1,7');
    expect(c.peek(1)).toBeUndefined();
    expect(c.peek(2)).toEqual([entry('b')]);
  });

  it('does not keep a read that a notice overtook, and reads again for the next request', async () => {
    const c = listeningCache();
    const r = reads();
    const p = c.load(1, r.read(1));
    c.invalidate('1');
    r.finish(0, [entry('old')]);
    expect(await p).toEqual([entry('old')]);
    await tick();
    expect(c.peek(1)).toBeUndefined();
    const q = c.load(1, r.read(1));
    r.finish(1, [entry('old'), entry('new')]);
    expect(await q).toHaveLength(2);
    await tick();
    expect(c.peek(1)).toHaveLength(2);
  });

  it('shares one read among requests for the same user', async () => {
    const c = listeningCache();
    const r = reads();
    const a = c.load(3, r.read(3)); const b = c.load(3, r.read(3));
    r.finish(0, [entry('x')]);
    expect(await a).toBe(await b);
    expect(r.started).toEqual([3]);
  });

  it('answers users with no history from memory until a notice names them', () => {
    const c = listeningCache();
    expect(c.peek(42)).toEqual([]);
    c.invalidate('42');
    expect(c.peek(42)).toBeUndefined();
    // Everything emptied: kept histories go, the users with history stay a superset.
    c.invalidate('*');
    expect(c.peek(42)).toBeUndefined();
    expect(c.peek(43)).toEqual([]);
  });

  it('counts users notified while the users with history were being read', () => {
    const c = new HistoryCache('postgresql://unused', 10);
    c.listening();
    expect(c.peek(9)).toBeUndefined(); // not known yet: must be read
    c.invalidate('9');
    c.usersWithHistoryRead([1]);
    expect(c.peek(9)).toBeUndefined();
    expect(c.peek(2)).toEqual([]);
  });

  it('drops the least recently asked user beyond its size', async () => {
    const c = listeningCache(2);
    const r = reads();
    for (const u of [1, 2]) { const p = c.load(u, r.read(u)); r.finish(r.started.length - 1, [entry(`m${u}`)]); await p; await tick(); }
    c.peek(1); // 1 is now more recent than 2
    const p = c.load(3, r.read(3)); r.finish(2, [entry('m3')]); await p; await tick();
    expect(c.peek(2)).toBeUndefined();
    expect(c.peek(1)).toEqual([entry('m1')]);
    expect(c.peek(3)).toEqual([entry('m3')]);
  });

  it('keeps nothing and knows nobody while the connection is down, nor a read begun before', async () => {
    const c = listeningCache();
    const r = reads();
    const p = c.load(1, r.read(1));
    c.down('connection closed');
    r.finish(0, [entry('a')]);
    await p; await tick();
    expect(c.peek(1)).toBeUndefined();
    expect(c.peek(42)).toBeUndefined();
    const q = c.load(1, r.read(1));
    r.finish(1, [entry('a')]);
    await q; await tick();
    c.listening();
    expect(c.peek(1)).toBeUndefined();
    expect(c.stats).toMatchObject({ state: 'listening', users: 0, usersWithHistory: null, lastError: null });
  });

  it('is off with a size of 0: every request reads', async () => {
    const c = new HistoryCache('postgresql://unused', 0);
    expect(c.stats.state).toBe('off');
    const r = reads();
    const p = c.load(1, r.read(1)); r.finish(0, []); await p;
    expect(c.peek(1)).toBeUndefined();
  });

  it('starts warm: keeps the histories read in bulk, except those a notice named during the read', async () => {
    let release: (() => void) | null = null;
    const asked: number[][] = [];
    const c = new HistoryCache('postgresql://unused', 3, {
      users: async (limit) => [5, 6, 7, 8].slice(0, limit),
      read: async (users) => {
        asked.push([...users]);
        await new Promise<void>((r) => { release = r; });
        return new Map(users.map((u) => [u, [entry(`m${u}`)]]));
      },
    });
    c.listening();
    c.usersWithHistoryRead([5, 6, 7, 8]);
    const done = c.preload();
    await tick();
    c.invalidate('6');
    release!();
    await done;
    expect(asked).toEqual([[5, 6, 7]]);
    expect(c.peek(5)).toEqual([entry('m5')]);
    expect(c.peek(6)).toBeUndefined();
    expect(c.peek(7)).toEqual([entry('m7')]);
    expect(c.stats.preloaded).toBe(2);
  });

  it('keeps nothing from a bulk read that a reset overtook', async () => {
    let release: (() => void) | null = null;
    const c = new HistoryCache('postgresql://unused', 10, {
      users: async () => [5],
      read: async (users) => { await new Promise<void>((r) => { release = r; }); return new Map(users.map((u) => [u, [entry('a')]])); },
    });
    c.listening();
    const done = c.preload();
    await tick();
    c.invalidate('*');
    release!();
    await done;
    expect(c.peek(5)).toBeUndefined();
  });
});
