/**
 * The judge and the guardrail check on fixture served_recommendations, user_assignments and
 * watches tables in a scratch database, and the SQL metric checked against the TypeScript one.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pool } from '../lib/db.ts';
import { computeOutcomes, onlineMetrics, slotMetrics, type Exposure, type WatchStart } from '../lib/eval/online.ts';
import { checkGuardrailsWith, judgeReleaseWith, mainSpecPath, releasePercent } from '../lib/eval/release.ts';
import { DEFAULT_EVAL_SETTINGS, type EvalSettings } from '../lib/eval/settings.ts';
import { hash32, Rng } from '../lib/random.ts';
import { slotFor, type Slot } from '../lib/routing.ts';
import { scratchDatabase } from './support/db.ts';

const MIN = 60_000;
const settings: EvalSettings = { ...DEFAULT_EVAL_SETTINGS, judge: { ...DEFAULT_EVAL_SETTINGS.judge, minUsersPerSlot: 400 } };
const W = settings.attributionWindowMs;
const NOW = new Date();

interface FixtureOptions {
  releaseId: string;
  users: number;
  /** The percent the gateway really assigned with (default = configured). */
  assignPercent: number;
  hitRate: Record<Slot, number>;
  seed: number;
  /** Share of nightly-assigned requests that nightly failed (answered by main with this reason). */
  nightlyFailure?: { share: number; reason: string };
  /** Exposures are served in [NOW - startMin, NOW - endMin]. */
  startMin?: number;
  endMin?: number;
  firstUser?: number;
}

interface Fixture { exposures: Exposure[]; watches: WatchStart[] }

function makeFixture(o: FixtureOptions): Fixture {
  const rng = new Rng(hash32(o.seed));
  const exposures: Exposure[] = [];
  const watches: WatchStart[] = [];
  const start = NOW.getTime() - (o.startMin ?? 300) * MIN;
  const span = ((o.startMin ?? 300) - (o.endMin ?? 40)) * MIN;
  for (let u = o.firstUser ?? 0; u < (o.firstUser ?? 0) + o.users; u++) {
    const slot = slotFor(u, o.releaseId, o.assignPercent);
    const k = rng.int(1, 3);
    const q = 1 - Math.pow(1 - o.hitRate[slot], 1 / k);
    const base = rng.int(0, 400);
    for (let j = 0; j < k; j++) {
      const servedAt = start + Math.floor(rng.next() * span);
      const movieIds = Array.from({ length: 20 }, (_, r) => `movie+${(base + 20 * j + r) % 500}`);
      let servedBy: string = slot;
      let fallback: string | null = null;
      if (slot === 'nightly' && o.nightlyFailure && rng.chance(o.nightlyFailure.share)) {
        servedBy = 'main';
        fallback = o.nightlyFailure.reason;
      }
      exposures.push({ servedAt, userId: u, servedBy, assigned: slot, movieIds, latencyMs: 10 + rng.int(0, 200) + rng.next(), fallback });
      if (rng.chance(q)) watches.push({ userId: u, movieId: movieIds[rng.int(0, 19)], firstAt: servedAt + Math.floor(rng.next() * (W - 1000)) });
      // Noise: a listed movie started too late to count, and an unrelated movie.
      else if (rng.chance(0.2)) watches.push({ userId: u, movieId: movieIds[rng.int(0, 19)], firstAt: servedAt + W + MIN });
      if (rng.chance(0.3)) watches.push({ userId: u, movieId: `other+${u}+${j}`, firstAt: servedAt + MIN });
    }
  }
  return { exposures, watches };
}

async function load(pool: Pool, releaseId: string, f: Fixture, versions: Record<Slot, string>): Promise<void> {
  const served = f.exposures.map((e) => ({
    served_at: new Date(e.servedAt).toISOString(), user_id: e.userId, slot: e.servedBy, release_id: releaseId,
    model_version: e.servedBy === 'popular' ? null : versions[e.servedBy as Slot], movie_ids: e.movieIds, latency_ms: e.latencyMs, fallback: e.fallback,
  }));
  await pool.query(`INSERT INTO served_recommendations (served_at, user_id, slot, release_id, model_version, movie_ids, latency_ms, fallback)
    SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(served_at timestamptz, user_id int, slot text, release_id text, model_version text, movie_ids text[], latency_ms float8, fallback text)`,
  [JSON.stringify(served)]);
  const assigned = new Map(f.exposures.map((e) => [e.userId, e.assigned!]));
  await pool.query(`INSERT INTO user_assignments (release_id, user_id, slot) SELECT $1, * FROM unnest($2::int[], $3::text[]) ON CONFLICT DO NOTHING`,
    [releaseId, [...assigned.keys()], [...assigned.values()]]);
  // One watch row per user and movie: the earliest start wins (as ingest aggregates them).
  const first = new Map<string, WatchStart>();
  for (const w of f.watches) {
    const k = `${w.userId} ${w.movieId}`;
    if (!first.has(k) || first.get(k)!.firstAt > w.firstAt) first.set(k, w);
  }
  const rows = [...first.values()];
  await pool.query(`INSERT INTO watches (user_id, movie_id, first_at, last_at, minutes, max_minute)
    SELECT u, m, t, t, 10, 10 FROM unnest($1::int[], $2::text[], $3::timestamptz[]) AS x(u, m, t)
    ON CONFLICT (user_id, movie_id) DO UPDATE SET first_at = least(watches.first_at, excluded.first_at), last_at = least(watches.first_at, excluded.first_at)`,
  [rows.map((w) => w.userId), rows.map((w) => w.movieId), rows.map((w) => new Date(w.firstAt).toISOString())]);
}

async function route(pool: Pool, releaseId: string | null, percent: number, mainVersion = 'seed-baseline'): Promise<void> {
  await pool.query(`INSERT INTO routing_state (id, main_url, main_version, nightly_url, nightly_version, nightly_percent, release_id, updated_by)
    VALUES (1, 'http://127.0.0.1:3001', $3, $4, $2, $1, $2, 'test')
    ON CONFLICT (id) DO UPDATE SET main_version = $3, nightly_url = $4, nightly_version = $2, nightly_percent = $1, release_id = $2`,
  [percent, releaseId, mainVersion, releaseId ? 'http://127.0.0.1:3002' : null]);
  await pool.query(`INSERT INTO routing_changes (changed_by, after) VALUES ('test', $1)`,
    [JSON.stringify({ releaseId, nightlyPercent: percent, mainVersion, nightlyVersion: releaseId })]);
}

let db: Awaited<ReturnType<typeof scratchDatabase>>;
const fixtures = new Map<string, Fixture>();

beforeAll(async () => {
  db = await scratchDatabase('judge');
  await db.pool.query(`INSERT INTO movies (id) SELECT 'movie+' || g FROM generate_series(0, 999) g`);
  const specs: [string, Omit<FixtureOptions, 'releaseId' | 'seed'>, number][] = [
    ['better', { users: 3000, assignPercent: 20, hitRate: { main: 0.15, nightly: 0.35 }, firstUser: 0 }, 20],
    ['worse', { users: 3000, assignPercent: 20, hitRate: { main: 0.35, nightly: 0.15 }, firstUser: 10_000 }, 20],
    // The gateway put half of the users in nightly while 20 % was configured.
    ['srm', { users: 3000, assignPercent: 50, hitRate: { main: 0.15, nightly: 0.35 }, firstUser: 20_000 }, 20],
    ['flaky', { users: 3000, assignPercent: 20, hitRate: { main: 0.15, nightly: 0.35 }, firstUser: 30_000, nightlyFailure: { share: 0.1, reason: 'nightly_error' }, startMin: 200, endMin: 0 }, 20],
    ['young', { users: 500, assignPercent: 20, hitRate: { main: 0.15, nightly: 0.35 }, firstUser: 40_000, startMin: 25, endMin: 0 }, 20],
  ];
  let seed = 1;
  for (const [id, o, percent] of specs) {
    const f = makeFixture({ releaseId: id, seed: seed++, ...o });
    fixtures.set(id, f);
    await load(db.pool, id, f, { main: 'seed-baseline', nightly: id });
    await route(db.pool, id, percent);
  }
  // The last release routed stays current; the others are found through routing_changes.
  await route(db.pool, 'better', 20);
  // Statistics as a running database has them; autovacuum would otherwise gather them at a moment
  // of its own during the tests, and the plans would change under them.
  await db.pool.query('ANALYZE');
}, 120_000);

afterAll(async () => {
  await db?.drop();
});

describe('judgeRelease on fixture tables', () => {
  it('computes the same per-slot metric in SQL as in TypeScript', async () => {
    const f = fixtures.get('better')!;
    const sql = await onlineMetrics(db.pool, 'better', { windowMs: W, userOutcome: 'any', asOf: NOW });
    const ts = computeOutcomes(f.exposures, f.watches, W, NOW.getTime());
    for (const s of ['main', 'nightly'] as Slot[]) {
      const expected = slotMetrics(s, ts.users, ts.slots[s], 1000, 'any');
      const got = sql.slots[s];
      expect(got.users).toBeGreaterThan(300);
      expect({ ...got, mrr: got.mrr!.toFixed(9), latencyP50: got.latencyP50!.toFixed(3), latencyP99: got.latencyP99!.toFixed(3) })
        .toEqual({ ...expected, mrr: expected.mrr!.toFixed(9), latencyP50: expected.latencyP50!.toFixed(3), latencyP99: expected.latencyP99!.toFixed(3) });
    }
  });

  it('says Successful when nightly is clearly better', async () => {
    const j = await judgeReleaseWith(db.pool, settings, 'better', NOW);
    expect(j.verdict, j.explanation).toBe('Successful');
    expect(j.numbers.configured_percent).toBe(20);
    expect(j.numbers.configured_percent_source).toBe('routing_state');
    expect(j.numbers.nightly_version).toBe('better');
    expect(j.numbers.main_version).toBe('seed-baseline');
    expect(Number(j.numbers.nightly_user_hit_rate)).toBeGreaterThan(Number(j.numbers.main_user_hit_rate));
    expect(j.explanation).toMatch(/Release better: .*Verdict: Successful/);
  });

  it('says Failed when the roles are swapped (nightly clearly worse)', async () => {
    const j = await judgeReleaseWith(db.pool, settings, 'worse', NOW);
    expect(j.verdict, j.explanation).toBe('Failed');
    expect(j.reason).toMatch(/^nightly is worse/);
    expect(j.numbers.configured_percent_source).toBe('routing_changes');
  });

  it('says Failed on a sample-ratio mismatch even though nightly is better', async () => {
    const j = await judgeReleaseWith(db.pool, settings, 'srm', NOW);
    expect(j.verdict).toBe('Failed');
    expect(j.reason).toMatch(/^sample-ratio mismatch/);
  });

  it('says Failed when nightly broke its guardrails over the release', async () => {
    const j = await judgeReleaseWith(db.pool, settings, 'flaky', NOW);
    expect(j.verdict).toBe('Failed');
    expect(j.reason).toMatch(/^guardrails: error rate/);
  });

  it('is Inconclusive without data, or with exposures younger than the attribution window only', async () => {
    const none = await judgeReleaseWith(db.pool, settings, 'no-such-release', NOW);
    expect(none.verdict).toBe('Inconclusive');
    expect(none.reason).toMatch(/^no data/);
    const young = await judgeReleaseWith(db.pool, settings, 'young', NOW);
    expect(young.verdict).toBe('Inconclusive');
    expect(young.numbers.main_exposures).toBe(0);
    // The same data judged an hour later has outcomes (but too few users).
    const later = await judgeReleaseWith(db.pool, settings, 'young', new Date(NOW.getTime() + 60 * MIN));
    expect(Number(later.numbers.main_exposures)).toBeGreaterThan(0);
    expect(later.reason).toMatch(/not enough users yet/);
  });

  it('with the default minimum sample size the same good release is not yet promoted', async () => {
    const j = await judgeReleaseWith(db.pool, DEFAULT_EVAL_SETTINGS, 'better', NOW);
    expect(j.verdict).toBe('Inconclusive');
  });
});

describe('checkGuardrails on fixture tables', () => {
  it('flags nightly failing 10% of its requests in the recent window', async () => {
    const r = await checkGuardrailsWith(db.pool, settings, 'flaky', NOW);
    expect(r.ok).toBe(false);
    expect(r.violations.join(';')).toMatch(/error rate .* above the limit of 2\.00%/);
    expect(r.violations.join(';')).toMatch(/fallback rate/);
    expect(Number(r.numbers.exposures)).toBeGreaterThanOrEqual(settings.guardrails.minExposures);
  });

  it('passes a healthy nightly, and holds nothing against an empty window', async () => {
    const healthy = await checkGuardrailsWith(db.pool, settings, 'better', new Date(NOW.getTime() - 60 * MIN));
    expect(Number(healthy.numbers.exposures)).toBeGreaterThan(settings.guardrails.minExposures);
    expect(healthy).toMatchObject({ ok: true, violations: [] });
    const empty = await checkGuardrailsWith(db.pool, settings, 'better', NOW);
    expect(empty.ok).toBe(true);
    expect(empty.numbers.exposures).toBe(0);
    expect(String(empty.numbers.note)).toMatch(/only 0 nightly exposures/);
  });
});

describe('release lookups', () => {
  it('finds the configured percent and main\'s spec', async () => {
    expect(await releasePercent(db.pool, 'better')).toEqual({ percent: 20, source: 'routing_state' });
    expect(await releasePercent(db.pool, 'worse')).toEqual({ percent: 20, source: 'routing_changes' });
    expect(await releasePercent(db.pool, 'never')).toEqual({ percent: null, source: 'not recorded' });
    expect(await mainSpecPath(db.pool)).toEqual({ version: 'seed-baseline', path: 'models/seed-baseline.json' });
    await db.pool.query(`INSERT INTO releases (id, model_spec, phase) VALUES ('v7', 'models/affinity-v1.json', 'promoted')`);
    await db.pool.query(`UPDATE routing_state SET main_version = 'v7'`);
    expect(await mainSpecPath(db.pool)).toEqual({ version: 'v7', path: 'models/affinity-v1.json' });
    await db.pool.query(`UPDATE routing_state SET main_version = 'ghost'`);
    await expect(mainSpecPath(db.pool)).rejects.toThrow(/neither a recorded release nor a spec file/);
    await db.pool.query(`UPDATE routing_state SET main_version = 'seed-baseline'`);
  });
});

describe('on tables whose planner statistics are stale or missing', () => {
  const TABLES = ['served_recommendations', 'watches', 'user_assignments', 'movies'];
  /** Equal, but numbers within a relative 1e-9: sums taken in another order differ in the last bits. */
  const expectSame = (got: unknown, want: unknown, at = ''): void => {
    if (typeof want === 'number' && typeof got === 'number') {
      expect(Math.abs(got - want), `${at}: ${got} vs ${want}`).toBeLessThanOrEqual(1e-9 * Math.max(Math.abs(got), Math.abs(want)));
    } else if (want && typeof want === 'object' && got && typeof got === 'object') {
      expect(Object.keys(got).sort(), at).toEqual(Object.keys(want).sort());
      for (const k of Object.keys(want)) expectSame((got as Record<string, unknown>)[k], (want as Record<string, unknown>)[k], `${at}.${k}`);
    } else {
      expect(got, at).toEqual(want);
    }
  };
  const judgeAll = async (q: Pick<Pool, 'query'>, ids: string[]) => {
    const out: Record<string, unknown> = {};
    for (const id of ids) {
      const j = await judgeReleaseWith(q, settings, id, NOW);
      out[id] = { verdict: j.verdict, reason: j.reason, numbers: j.numbers };
      out[`${id} guardrails`] = await checkGuardrailsWith(q, settings, id, NOW);
    }
    return out;
  };

  it('judges as it does on analysed tables, in time linear in the release', async () => {
    const client = await db.pool.connect();
    let failure: Error | undefined;
    try {
      for (const t of TABLES) await client.query(`ALTER TABLE ${t} SET (autovacuum_enabled = false)`);
      // A plan that aggregates once per exposure takes minutes on a few thousand exposures (the
      // judge timed out in CI that way); a linear one takes a second or two. The bound is far from both.
      await client.query(`SET statement_timeout = '60s'`);

      // The usual case in production: a release's rows came after the last ANALYZE, so the planner
      // takes its release id for a rare value and expects a row or two.
      const late = makeFixture({ releaseId: 'late', seed: 99, users: 3000, assignPercent: 20, hitRate: { main: 0.15, nightly: 0.35 }, firstUser: 50_000, nightlyFailure: { share: 0.1, reason: 'nightly_error' }, startMin: 200, endMin: 0 });
      await load(db.pool, 'late', late, { main: 'seed-baseline', nightly: 'late' });
      await route(db.pool, 'late', 20);
      const stale = await judgeAll(client, ['late']);

      // What pg_restore leaves: no statistics at all (reltuples -1 = never analysed). Writing the
      // catalogs needs a superuser, which the stack's role is (stack/components/postgres.ts).
      await client.query(`DELETE FROM pg_statistic WHERE starelid = ANY ($1::regclass[])`, [TABLES]);
      await client.query(`UPDATE pg_class SET reltuples = -1, relpages = 0 WHERE oid = ANY ($1::regclass[])`, [TABLES]);
      const none = await judgeAll(client, ['late', 'better']);

      await client.query('ANALYZE');
      const analysed = await judgeAll(client, ['late', 'better']);
      expect(analysed).toMatchObject({ late: { verdict: 'Failed' }, better: { verdict: 'Successful' } });
      expectSame(stale, { late: analysed.late, 'late guardrails': analysed['late guardrails'] }, 'stale');
      expectSame(none, analysed, 'none');
    } catch (err) {
      failure = err as Error;
      throw err;
    } finally {
      await client.query('RESET statement_timeout').catch(() => undefined);
      for (const t of TABLES) await client.query(`ALTER TABLE ${t} RESET (autovacuum_enabled)`).catch(() => undefined);
      // After a failure the connection may be broken: discard it rather than pool it.
      client.release(failure);
      await route(db.pool, 'better', 20);
    }
  }, 600_000);
});
