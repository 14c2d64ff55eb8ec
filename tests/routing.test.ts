import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { bucketOf, parseUserId, routingEndpoints, slotEndpoints, slotFor, type RoutingState } from '../lib/routing.ts';
import { merge, parsePatch } from '../services/gateway/state.ts';

const users = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i * 7919 + (i % 13));

describe('sticky slot assignment (lib/routing.ts)', () => {
  it('puts the configured share of 5,000 distinct users in nightly, within 3.5 standard errors, for 18 release ids', () => {
    // Fixed ids: random ones made this fail about once in ten runs at a ±2-point bound (2.8 s.e. at 50 %).
    for (const percent of [1, 5, 20, 33, 50, 80]) {
      const bound = 3.5 * Math.sqrt((percent / 100) * (1 - percent / 100) / 5000) * 100;
      for (let k = 0; k < 3; k++) {
        const release = `rel-share-${percent}-${k}`;
        const nightly = users(5000).filter((u) => slotFor(u, release, percent) === 'nightly').length;
        expect(Math.abs((nightly / 5000) * 100 - percent), `${percent}% on ${release}`).toBeLessThanOrEqual(bound);
      }
    }
  });

  it('is stable: the same user and release always give the same slot', () => {
    const release = `rel-${randomBytes(4).toString('hex')}`;
    for (const u of users(500)) {
      const first = slotFor(u, release, 20);
      for (let i = 0; i < 10; i++) expect(slotFor(u, release, 20)).toBe(first);
    }
    // A known value pins the hash itself, so a change of algorithm (which would reshuffle every user
    // mid-release on upgrade) fails here: sha256("r1:42") starts with 20c805d2 (computed with Python's hashlib).
    expect(bucketOf(42, 'r1')).toBe(9602);
  });

  it('raising the percent only moves users from main to nightly', () => {
    const release = `rel-${randomBytes(4).toString('hex')}`;
    const all = users(5000);
    let previous = new Set(all.filter((u) => slotFor(u, release, 0) === 'nightly'));
    expect(previous.size).toBe(0);
    for (const percent of [1, 10, 20, 35, 50, 75, 100]) {
      const now = new Set(all.filter((u) => slotFor(u, release, percent) === 'nightly'));
      for (const u of previous) expect(now.has(u), `user ${u} left nightly at ${percent}%`).toBe(true);
      expect(now.size).toBeGreaterThanOrEqual(previous.size);
      previous = now;
    }
    expect(previous.size).toBe(all.length);
  });

  it('progressive steps 5 → 20 → 50 under one release id: every user in nightly at a step is still there at the next', () => {
    // The canary routes each step with the same release id (workflows/canary.ts), as the gateway
    // assigns with slotFor(user, routing.releaseId, routing.nightlyPercent).
    const release = `rel-${randomBytes(4).toString('hex')}`;
    const all = users(20_000);
    const at = (percent: number) => new Set(all.filter((u) => slotFor(u, release, percent) === 'nightly'));
    const [s5, s20, s50] = [at(5), at(20), at(50)];
    expect(s5.size).toBeGreaterThan(0.04 * all.length);
    expect([...s5].filter((u) => !s20.has(u))).toEqual([]);
    expect([...s20].filter((u) => !s50.has(u))).toEqual([]);
    expect(s50.size).toBeGreaterThan(s20.size);
    expect(s20.size).toBeGreaterThan(s5.size);
  });

  it('draws a different sample of users for each release, and none without a release', () => {
    const all = users(5000);
    const a = new Set(all.filter((u) => slotFor(u, 'release-a', 20) === 'nightly'));
    const b = all.filter((u) => slotFor(u, 'release-b', 20) === 'nightly');
    const overlap = b.filter((u) => a.has(u)).length / b.length;
    // Independent samples overlap by about the percent itself (20%), not 100%.
    expect(overlap).toBeGreaterThan(0.12);
    expect(overlap).toBeLessThan(0.28);
    expect(all.every((u) => slotFor(u, null, 50) === 'main')).toBe(true);
  });

  it('parses user ids as the inference service does', () => {
    expect(parseUserId('0')).toEqual({ ok: true, id: 0 });
    expect(parseUserId('2147483647')).toEqual({ ok: true, id: 2147483647 });
    for (const bad of ['', '-1', '1.5', 'abc', '1e3', ' 1', '2147483648', '99999999999999999999']) {
      const r = parseUserId(bad);
      expect(r.ok, bad).toBe(false);
      if (!r.ok) expect(r.reason).not.toContain('\n');
    }
  });
});

describe('replicas in the routing state (lib/routing.ts, services/gateway/state.ts)', () => {
  const state: RoutingState = {
    mainUrl: 'http://h:3001', mainVersion: 'v1', nightlyUrl: 'http://h:3002', nightlyVersion: 'v2', nightlyPercent: 20, releaseId: 'r',
    mainReplicas: ['http://h:3101', 'http://h:3201'], nightlyReplicas: ['http://h:3102'], updatedAt: new Date(0).toISOString(), updatedBy: 'test',
  };
  const merged = (patch: Parameters<typeof merge>[1]) => {
    const r = merge(state, patch);
    if (!r.ok) throw new Error(r.reason);
    return r.next;
  };

  it("lists a slot's endpoints, its URL first, without repeats; none for nightly without a URL", () => {
    expect(slotEndpoints(state, 'main')).toEqual(['http://h:3001', 'http://h:3101', 'http://h:3201']);
    expect(slotEndpoints(state, 'nightly')).toEqual(['http://h:3002', 'http://h:3102']);
    expect(slotEndpoints({ ...state, mainReplicas: ['http://h:3001'] }, 'main')).toEqual(['http://h:3001']);
    expect(slotEndpoints({ ...state, nightlyUrl: null }, 'nightly')).toEqual([]);
  });

  it('computes both endpoint lists once per state: the same as slotEndpoints, every routed URL once, frozen', () => {
    const ep = routingEndpoints(state);
    expect(ep.main).toEqual(slotEndpoints(state, 'main'));
    expect(ep.nightly).toEqual(slotEndpoints(state, 'nightly'));
    expect(ep.all).toEqual(['http://h:3001', 'http://h:3101', 'http://h:3201', 'http://h:3002', 'http://h:3102']);
    expect(Object.isFrozen(ep.main) && Object.isFrozen(ep.nightly) && Object.isFrozen(ep.all)).toBe(true);
    const noNightly = routingEndpoints({ ...state, nightlyUrl: null });
    expect(noNightly.nightly).toEqual([]);
    expect(noNightly.all).toEqual(['http://h:3001', 'http://h:3101', 'http://h:3201']);
    // A URL in both lists (allowed while nightly gets 0 %) is checked once.
    expect(routingEndpoints({ ...state, nightlyUrl: 'http://h:3101', nightlyReplicas: [] }).all).toEqual(['http://h:3001', 'http://h:3101', 'http://h:3201']);
  });

  it('keeps replicas through percent changes, and drops those not named again when the slot moves or changes version', () => {
    expect(merged({ nightlyPercent: 50 }).mainReplicas).toEqual(state.mainReplicas);
    expect(merged({ mainVersion: 'v1' }).mainReplicas).toEqual(state.mainReplicas);
    expect(merged({ mainVersion: 'v3' }).mainReplicas).toEqual([]);
    expect(merged({ mainUrl: 'http://h:4001' }).mainReplicas).toEqual([]);
    expect(merged({ mainUrl: 'http://h:3001/' }).mainReplicas).toEqual(state.mainReplicas);
    expect(merged({ mainVersion: 'v3', mainReplicas: ['http://h:3101/'] }).mainReplicas).toEqual(['http://h:3101']);
    expect(merged({ nightlyUrl: null, nightlyPercent: 0, releaseId: null }).nightlyReplicas).toEqual([]);
    expect(merged({ mainReplicas: ['http://h:3001', 'http://h:3101', 'http://h:3101'] }).mainReplicas).toEqual(['http://h:3101']);
  });

  it('refuses a replica shared by both slots, nightly replicas without nightly, and malformed lists', () => {
    expect(merge(state, { mainReplicas: ['http://h:3102'] })).toMatchObject({ ok: false, reason: expect.stringMatching(/both main and nightly/) });
    expect(merge({ ...state, nightlyUrl: null, nightlyVersion: null, nightlyPercent: 0, nightlyReplicas: [] }, { nightlyReplicas: ['http://h:3102'] }))
      .toMatchObject({ ok: false, reason: 'nightlyReplicas need a nightlyUrl' });
    expect(parsePatch({ mainReplicas: 'http://h:3101' })).toMatchObject({ ok: false, reason: expect.stringMatching(/^mainReplicas: must be a list/) });
    expect(parsePatch({ mainReplicas: ['ftp://h:1'] })).toMatchObject({ ok: false, reason: expect.stringMatching(/^mainReplicas: /) });
    expect(parsePatch({ mainReplicas: [] })).toMatchObject({ ok: true });
  });
});
